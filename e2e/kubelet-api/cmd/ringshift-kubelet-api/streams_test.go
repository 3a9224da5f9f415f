package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	utilexec "k8s.io/utils/exec"
)

func TestNsenterArgs(t *testing.T) {
	got := strings.Join(nsenterArgs(7, []string{"net", "pid"}, 65532, 65533, []string{"redis-cli", "PING"}), " ")
	want := "--target 7 --mount --root --wd --net --pid --setgid 65533 --setuid 65532 -- redis-cli PING"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got := strings.Join(nsenterArgs(7, nil, 0, 0, []string{"id"}), " "); got != "--target 7 --mount --root --wd -- id" {
		t.Fatalf("root container: %s", got)
	}
}

func TestStatusIDsReadsEffectiveIDs(t *testing.T) {
	status := "Name:\tx\nUid:\t1000\t65532\t65532\t65532\nGid:\t1000\t65533\t65533\t65533\n"
	uid, gid, err := statusIDs(status)
	if err != nil || uid != 65532 || gid != 65533 {
		t.Fatalf("%d %d %v", uid, gid, err)
	}
	if _, _, err := statusIDs("Name:\tx\n"); err == nil {
		t.Fatal("status without ids accepted")
	}
}

func TestEnviron(t *testing.T) {
	got := environ([]byte("A=1\x00PATH=/bin\x00\x00"))
	if strings.Join(got, ",") != "A=1,PATH=/bin" {
		t.Fatalf("%q", got)
	}
}

// nopCloser turns a buffer into the WriteCloser the streaming library hands out.
type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

// sleeper starts a stand-in container process and a pod dir whose pid file names it.
func sleeper(t *testing.T) (*store, *exec.Cmd) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nsenter needs root")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("no nsenter")
	}
	cmd := exec.Command("sleep", "30")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "GREETING=from-the-container"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var start uint64
	for i := 0; i < 50; i++ { // until exec replaced the forked child's environment
		if env, _ := os.ReadFile(filepathJoinProc(cmd.Process.Pid, "environ")); bytes.Contains(env, []byte("GREETING")) {
			start, _ = procStart(cmd.Process.Pid)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := podFixture(t, "", 0)
	writePidFile(t, filepath.Join(s.podsDir, "ns_p", "c.pid"), cmd.Process.Pid, start)
	return s, cmd
}

func filepathJoinProc(pid int, name string) string {
	return filepath.Join("/proc", itoa(pid), name)
}

func TestExecRunsWithTheContainersEnvironmentAndReportsExitCodes(t *testing.T) {
	s, _ := sleeper(t)
	target := &execTarget{store: s, ns: "ns", pod: "p"}
	out, errOut := nopCloser{new(bytes.Buffer)}, nopCloser{new(bytes.Buffer)}
	err := target.ExecInContainer(context.Background(), "ns/p", "", "c", []string{"sh", "-c", "read x; echo $GREETING $x; echo oops >&2"},
		strings.NewReader("hello\n"), out, errOut, false, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "from-the-container hello\n" || errOut.String() != "oops\n" {
		t.Fatalf("stdout %q stderr %q", out.String(), errOut.String())
	}
	err = target.ExecInContainer(context.Background(), "ns/p", "", "c", []string{"sh", "-c", "exit 3"}, nil, nopCloser{new(bytes.Buffer)}, nil, false, nil, 0)
	var code utilexec.CodeExitError
	if !errors.As(err, &code) || code.ExitStatus() != 3 {
		t.Fatalf("want exit code 3, got %v", err)
	}
}

func TestExecWithTTYGivesATerminal(t *testing.T) {
	s, _ := sleeper(t)
	target := &execTarget{store: s, ns: "ns", pod: "p"}
	out := nopCloser{new(bytes.Buffer)}
	err := target.ExecInContainer(context.Background(), "ns/p", "", "c", []string{"sh", "-c", "test -t 0 && test -t 1 && echo tty"},
		nil, out, nil, true, nil, 0)
	if err != nil || !strings.Contains(out.String(), "tty") {
		t.Fatalf("%q %v", out.String(), err)
	}
}

func TestExecIntoAStoppedContainerIsNotFound(t *testing.T) {
	s := podFixture(t, "", 0)
	writePidFile(t, filepath.Join(s.podsDir, "ns_p", "c.pid"), os.Getpid(), 1)
	target := &execTarget{store: s, ns: "ns", pod: "p"}
	err := target.ExecInContainer(context.Background(), "ns/p", "", "c", []string{"true"}, nil, nil, nil, false, nil, 0)
	if !errors.Is(err, errNotFound) {
		t.Fatalf("want not found, got %v", err)
	}
}

func TestPortForwardCopiesBothWays(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // the pod's port: answers each line upper-cased
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			_, _ = c.Write(bytes.ToUpper(line))
		}
	}()
	s := podFixture(t, "", 0)
	if err := os.WriteFile(filepath.Join(s.podsDir, "ns_p", "pod-info.json"), []byte(`{"uid":"u","ip":"127.0.0.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- (&forwardTarget{store: s, ns: "ns", pod: "p"}).PortForward(context.Background(), "ns/p", "u", port, server)
	}()
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(client).ReadString('\n')
	if err != nil || reply != "PING\n" {
		t.Fatalf("%q %v", reply, err)
	}
	_ = client.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the forward did not end when the client closed")
	}
}

func TestForwardAddress(t *testing.T) {
	if got := forwardAddress(true, "10.0.0.5", 6379); got != "127.0.0.1:6379" {
		t.Errorf("own namespace: %s", got)
	}
	if got := forwardAddress(false, "127.40.0.11", 6379); got != "127.40.0.11:6379" {
		t.Errorf("host namespace: %s", got)
	}
}

func TestPortForwardToAPodWithoutAddressIsNotFound(t *testing.T) {
	s := podFixture(t, "", 0)
	_, server := net.Pipe()
	err := (&forwardTarget{store: s, ns: "ns", pod: "p"}).PortForward(context.Background(), "ns/p", "u", 80, server)
	if !errors.Is(err, errNotFound) {
		t.Fatalf("want not found, got %v", err)
	}
}

func TestAttachSendsInputToTheStdinSocketAndFollowsOutputUntilTheContainerStops(t *testing.T) {
	s, proc := sleeper(t)
	dir := filepath.Join(s.podsDir, "ns_p")
	sock := filepath.Join(dir, "c.stdin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		data, _ := io.ReadAll(c)
		got <- string(data)
		// The container answers, then exits.
		f, _ := os.OpenFile(filepath.Join(dir, "c.log"), os.O_APPEND|os.O_WRONLY, 0)
		_, _ = f.WriteString("PONG\n[kubelet 2026-12-07T10:00:09Z] container exited: code 0\n")
		_ = f.Close()
		_ = proc.Process.Kill()
		_ = proc.Wait()
	}()
	out := nopCloser{new(bytes.Buffer)}
	err = (&attachTarget{store: s, ns: "ns", pod: "p"}).AttachContainer(context.Background(), "ns/p", "", "c",
		strings.NewReader("PING\n"), out, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in := <-got; in != "PING\n" {
		t.Fatalf("stdin got %q", in)
	}
	if out.String() != "PONG\n" {
		t.Fatalf("attach output %q", out.String())
	}
}

// listenInNetns opens a listener on 127.0.0.1 inside the network namespace at nsPath.
func listenInNetns(t *testing.T, nsPath string) net.Listener {
	t.Helper()
	ch := make(chan net.Listener, 1)
	errs := make(chan error, 1)
	go func() {
		// Moved back before unlocking: a locked thread that exits in another namespace may be
		// the main thread, whose namespace /proc/self/ns/net then reports for the whole test.
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errs <- err
			return
		}
		defer own.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			errs <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errs <- err
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		if err != nil {
			errs <- err
			return
		}
		ch <- ln
	}()
	select {
	case ln := <-ch:
		return ln
	case err := <-errs:
		t.Fatal(err)
		return nil
	}
}

func TestPortForwardDialsLocalhostInsideAPodsOwnNetworkNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	// The "container": a process in a network namespace of its own, loopback up.
	cmd := exec.Command("unshare", "--net", "--", "sh", "-c", "ip link set lo up && exec sleep 30")
	if err := cmd.Start(); err != nil {
		t.Skip("unshare:", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	var start uint64
	for i := 0; i < 100; i++ { // until unshare has exec'd sleep in the new namespace
		comm, _ := os.ReadFile(filepathJoinProc(pid, "comm"))
		if strings.TrimSpace(string(comm)) == "sleep" {
			start, _ = procStart(pid)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if start == 0 {
		t.Fatal("the namespaced process did not start")
	}
	ln := listenInNetns(t, filepathJoinProc(pid, "ns/net"))
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Write([]byte("inside\n"))
			_ = c.Close()
		}
	}()
	s := podFixture(t, "", 0)
	dir := filepath.Join(s.podsDir, "ns_p")
	writePidFile(t, filepath.Join(dir, "c.pid"), pid, start)
	// The pod address is not where a runtime dials; a wrong one proves it.
	if err := os.WriteFile(filepath.Join(dir, "pod-info.json"), []byte(`{"uid":"u","ip":"192.0.2.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	forwarded := make(chan error, 1)
	go func() {
		forwarded <- (&forwardTarget{store: s, ns: "ns", pod: "p"}).PortForward(context.Background(), "ns/p", "u", port, server)
	}()
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	reply, err := bufio.NewReader(client).ReadString('\n')
	if err != nil || reply != "inside\n" {
		t.Fatalf("%q %v (forward: %v)", reply, err, <-forwarded)
	}
	_ = client.Close()
}
