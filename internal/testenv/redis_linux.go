package testenv

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill a started server when the test binary
// dies, so a crashed test run leaves no redis-server behind.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
