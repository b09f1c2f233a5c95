//go:build unix && !linux

package testenv

import "syscall"

func setDeathSignal(*syscall.SysProcAttr) {}
