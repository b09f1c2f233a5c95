//go:build !unix

package testenv

import "os/exec"

func setCredential(*exec.Cmd, *procCred)     {}
func setServerProcAttr(*exec.Cmd, *procCred) {}
func killServerGroup(cmd *exec.Cmd)          { _ = cmd.Process.Kill() }
