package testenv

import (
	"os/exec"
	"syscall"
)

// setGroupProcAttr puts a started server in a process group of its own,
// which killGroup kills, and makes the kernel kill it when the test binary
// dies.
func setGroupProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills cmd's process group.
func killGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}
