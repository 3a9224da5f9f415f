package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// forwardTarget connects port-forward streams to one pod.
type forwardTarget struct {
	store   *store
	ns, pod string
}

const dialTimeout = 10 * time.Second

// forwardAddress is where a port-forward connects: in a pod with a network namespace of its own,
// localhost inside it, as a container runtime does (so, as on a real cluster, a server bound
// only to the pod address is not reached); in a pod sharing the host's namespace (today's
// process kubelet) the pod's own address, the only one its servers listen on.
func forwardAddress(ownNetns bool, podIP string, port int32) string {
	host := podIP
	if ownNetns {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// PortForward connects to the pod's port (see forwardAddress) and copies both ways until either
// side closes.
func (t *forwardTarget) PortForward(ctx context.Context, _ string, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	info, err := t.store.info(t.ns, t.pod)
	if err != nil {
		return err
	}
	netns := t.netns()
	addr := forwardAddress(netns != "", info.IP, port)
	conn, err := t.dial(ctx, netns, addr)
	if err != nil {
		return fmt.Errorf("dialing %s in pod %s/%s: %w", addr, t.ns, t.pod, err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(stream, conn)
		done <- struct{}{}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

func (t *forwardTarget) dial(ctx context.Context, netns, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	if netns == "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	return dialInNetns(ctx, netns, addr)
}

// netns is the network namespace of a running container of the pod when it differs from this
// process's ("" otherwise).
func (t *forwardTarget) netns() string {
	dir, err := t.store.podDir(t.ns, t.pod)
	if err != nil {
		return ""
	}
	ours, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return ""
	}
	pidFiles, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, f := range pidFiles {
		container := strings.TrimSuffix(filepath.Base(f), ".pid")
		pid, err := t.store.runningPid(t.ns, t.pod, container)
		if err != nil {
			continue
		}
		path := fmt.Sprintf("/proc/%d/ns/net", pid)
		if theirs, err := os.Readlink(path); err == nil && theirs != ours {
			return path
		}
	}
	return ""
}

// dialInNetns opens the connection from a thread moved into the namespace; a socket stays in
// the namespace it was created in, so it is usable after the thread moves back.
func dialInNetns(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer own.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("entering %s: %w", nsPath, err)}
			return
		}
		d := net.Dialer{Timeout: dialTimeout}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: the thread stays locked and ends with this goroutine, out of the pool
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}
