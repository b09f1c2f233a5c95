//go:build unix

package testenv

import (
	"os/exec"
	"syscall"
)

func setCredential(cmd *exec.Cmd, c *procCred) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: c.uid, Gid: c.gid, NoSetGroups: true}
}

// setServerProcAttr puts the server in a process group of its own, so that
// killServerGroup reaches its backends too, and (on Linux) has the kernel
// kill it when the test binary dies.
func setServerProcAttr(cmd *exec.Cmd, _ *procCred) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setDeathSignal(cmd.SysProcAttr)
}

// killServerGroup sends SIGKILL to the process group of cmd's process.
func killServerGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}
