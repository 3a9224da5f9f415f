package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// attachTarget connects a client to a running container: its input goes to the container's
// stdin through the socket the Rust kubelet holds for containers with `stdin: true`
// (<container>.stdin.sock), and what the container writes to its log from now on comes back
// as stdout (the log holds stdout and stderr together).
type attachTarget struct {
	store   *store
	ns, pod string
}

func (t *attachTarget) AttachContainer(ctx context.Context, _ string, _ string, container string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	logPath, err := t.store.containerFile(t.ns, t.pod, container, ".log")
	if err != nil {
		return err
	}
	st, err := os.Stat(logPath)
	if err != nil {
		return err
	}
	offset := st.Size()
	if in != nil {
		sock, err := t.store.containerFile(t.ns, t.pod, container, ".stdin.sock")
		if err != nil {
			return err
		}
		conn, err := dialLongUnix(sock)
		if err != nil {
			return errors.New("the container does not take input (no stdin: true, or stdinOnce and already used)")
		}
		go func() {
			defer conn.Close()
			_, _ = io.Copy(conn, in)
		}()
	}
	if tty && resize != nil {
		t.applySizes(container, resize)
	}
	defer func() {
		for _, w := range []io.WriteCloser{out, errOut} {
			if w != nil {
				_ = w.Close()
			}
		}
	}()
	var sink io.Writer = io.Discard
	if out != nil {
		sink = out
	}
	return t.followOutput(ctx, sink, logPath, offset, container)
}

// followOutput copies container output appended to the log after offset until the container
// stops and its last output is copied, or the client goes away.
func (t *attachTarget) followOutput(ctx context.Context, out io.Writer, path string, offset int64, container string) error {
	var partial []byte
	for {
		_, runErr := t.store.runningPid(t.ns, t.pod, container)
		chunk, next, err := readFrom(path, offset)
		if err != nil {
			return err
		}
		offset = next
		partial = append(partial, chunk...)
		if err := writeOutputLines(out, &partial, runErr != nil && len(chunk) == 0); err != nil {
			return nil
		}
		if runErr != nil && len(chunk) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(followPoll):
		}
	}
}

// writeOutputLines writes the complete lines of *buf that are container output (not kubelet
// lines), keeping a trailing partial line unless flush is set.
func writeOutputLines(out io.Writer, buf *[]byte, flush bool) error {
	data := *buf
	complete := len(data)
	if !flush {
		complete = lastLineEnd(data)
	}
	for _, line := range splitLines(data[:complete]) {
		if _, isMarker := markerText(line); isMarker {
			continue
		}
		if _, err := out.Write(line); err != nil {
			return err
		}
	}
	*buf = append([]byte(nil), data[complete:]...)
	return nil
}

func lastLineEnd(data []byte) int {
	for i := len(data) - 1; i >= 0; i-- {
		if data[i] == '\n' {
			return i + 1
		}
	}
	return 0
}

// dialLongUnix connects through the directory's descriptor (/proc/self/fd/N/name): a socket
// address holds at most 107 bytes, less than a pod directory named for a long namespace and pod.
func dialLongUnix(path string) (net.Conn, error) {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	short := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path))
	return net.DialTimeout("unix", short, 5*time.Second)
}

// applySizes sets the client's window sizes on the container's terminal (its path is in
// <container>.tty, written by the kubelet for `tty: true`); without one they are dropped.
func (t *attachTarget) applySizes(container string, resize <-chan remotecommand.TerminalSize) {
	var term *os.File
	if path, err := t.store.containerFile(t.ns, t.pod, container, ".tty"); err == nil {
		if name, err := os.ReadFile(path); err == nil {
			term, _ = os.OpenFile(strings.TrimSpace(string(name)), os.O_RDWR|syscall.O_NOCTTY, 0)
		}
	}
	go func() {
		if term != nil {
			defer term.Close()
		}
		for size := range resize {
			// 0x0 is a client without a terminal size (not a terminal itself): the container
			// keeps the size it started with rather than one its line editor cannot use.
			if term != nil && size.Width > 0 && size.Height > 0 {
				_ = unix.IoctlSetWinsize(int(term.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Height, Col: size.Width})
			}
		}
	}()
}
