//go:build !linux

package testenv

import "os/exec"

func setGroupProcAttr(cmd *exec.Cmd) {}

func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
