package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// execTarget runs commands in one pod's containers.
type execTarget struct {
	store   *store
	ns, pod string
}

// namespaces entered besides the mount namespace when the container has its own.
var namespaces = []struct{ proc, flag string }{
	{"net", "--net"}, {"uts", "--uts"}, {"ipc", "--ipc"}, {"pid", "--pid"},
}

// nsenterArgs runs cmd in the container with process pid: its mount namespace, root and working
// directory, the other namespaces it does not share with this process, and its user and group.
func nsenterArgs(pid int, ownNS []string, uid, gid uint32, cmd []string) []string {
	args := []string{"--target", strconv.Itoa(pid), "--mount", "--root", "--wd"}
	for _, ns := range namespaces {
		for _, own := range ownNS {
			if own == ns.proc {
				args = append(args, ns.flag)
			}
		}
	}
	if uid != 0 || gid != 0 {
		args = append(args, "--setgid", strconv.FormatUint(uint64(gid), 10), "--setuid", strconv.FormatUint(uint64(uid), 10))
	}
	return append(append(args, "--"), cmd...)
}

// ownNamespaces lists the namespaces (of `namespaces`) in which pid differs from this process.
func ownNamespaces(pid int) []string {
	var own []string
	for _, ns := range namespaces {
		theirs, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns.proc))
		ours, err2 := os.Readlink("/proc/self/ns/" + ns.proc)
		if err1 == nil && err2 == nil && theirs != ours {
			own = append(own, ns.proc)
		}
	}
	return own
}

// statusIDs reads the effective uid and gid from /proc/PID/status text.
func statusIDs(status string) (uid, gid uint32, err error) {
	field := func(name string) (uint32, error) {
		for _, line := range strings.Split(status, "\n") {
			if rest, ok := strings.CutPrefix(line, name+":"); ok {
				f := strings.Fields(rest)
				if len(f) < 2 {
					break
				}
				v, err := strconv.ParseUint(f[1], 10, 32)
				return uint32(v), err
			}
		}
		return 0, fmt.Errorf("no %s line in process status", name)
	}
	if uid, err = field("Uid"); err != nil {
		return 0, 0, err
	}
	gid, err = field("Gid")
	return uid, gid, err
}

// environ splits /proc/PID/environ (NUL-separated) into KEY=VALUE entries.
func environ(data []byte) []string {
	var env []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if len(kv) > 0 {
			env = append(env, string(kv))
		}
	}
	return env
}

// execWaitDelay bounds how long output copying may outlive the command.
const execWaitDelay = 2 * time.Second

func (t *execTarget) ExecInContainer(ctx context.Context, _ string, _ string, container string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	pid, err := t.store.runningPid(t.ns, t.pod, container)
	if err != nil {
		return err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return fmt.Errorf("reading the container's process: %w", err)
	}
	uid, gid, err := statusIDs(string(status))
	if err != nil {
		return err
	}
	envData, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return fmt.Errorf("reading the container's environment: %w", err)
	}
	c := exec.CommandContext(ctx, "nsenter", nsenterArgs(pid, ownNamespaces(pid), uid, gid, cmd)...)
	c.Env = environ(envData)
	c.WaitDelay = execWaitDelay
	if tty {
		err = runWithTTY(c, in, out, resize)
	} else {
		err = runWithPipes(c, in, out, errOut)
	}
	if out != nil {
		_ = out.Close()
	}
	if errOut != nil {
		_ = errOut.Close()
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.Exited() {
		return utilexec.CodeExitError{Err: err, Code: exitErr.ExitCode()}
	}
	return err
}

// runWithPipes copies stdin into the command until it exits (a client may keep its stdin open
// after that, so the copy is not waited for).
func runWithPipes(c *exec.Cmd, in io.Reader, out, errOut io.Writer) error {
	if out != nil {
		c.Stdout = out
	}
	if errOut != nil {
		c.Stderr = errOut
	}
	var stdin io.WriteCloser
	if in != nil {
		p, err := c.StdinPipe()
		if err != nil {
			return err
		}
		stdin = p
	}
	if err := c.Start(); err != nil {
		return err
	}
	if stdin != nil {
		go func() {
			_, _ = io.Copy(stdin, in)
			_ = stdin.Close()
		}()
	}
	err := c.Wait()
	if errors.Is(err, exec.ErrWaitDelay) {
		return nil
	}
	return err
}
