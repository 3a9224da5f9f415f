package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// The Rust kubelet appends its own lines to a container's log ("[kubelet <RFC 3339 time>]
// starting container ...", exit reasons); `kubectl logs` shows only the container's output, and
// the "starting container" line separates one run of the container from the next.
const (
	markerPrefix = "[kubelet "
	startMarker  = "starting container "
)

// logOptions are the query parameters of /containerLogs that this kubelet honours.
type logOptions struct {
	follow   bool
	previous bool
	// tail: how many of the last lines, -1 for all.
	tail int64
	// limitBytes: stop after this many bytes, 0 for no limit.
	limitBytes int64
}

func parseBool(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: %q is not a boolean", name, v)
	}
	return b, nil
}

func parseLogOptions(q url.Values) (logOptions, error) {
	o := logOptions{tail: -1}
	var err error
	if o.follow, err = parseBool(q, "follow"); err != nil {
		return o, err
	}
	if o.previous, err = parseBool(q, "previous"); err != nil {
		return o, err
	}
	if ts, err := parseBool(q, "timestamps"); err != nil {
		return o, err
	} else if ts {
		// The container writes straight to its log file: there is no per-line time to show.
		return o, fmt.Errorf("timestamps are not recorded by the process kubelet")
	}
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, fmt.Errorf("tailLines: %q is not a non-negative integer", v)
		}
		o.tail = n
	}
	if v := q.Get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return o, fmt.Errorf("limitBytes: %q is not a positive integer", v)
		}
		o.limitBytes = n
	}
	return o, nil
}

// markerText is the text of a kubelet line (after "] "), ok=false for container output.
func markerText(line []byte) (string, bool) {
	if !bytes.HasPrefix(line, []byte(markerPrefix)) {
		return "", false
	}
	rest := line[len(markerPrefix):]
	end := bytes.IndexByte(rest, ']')
	if end < 0 {
		return "", false
	}
	if _, err := time.Parse(time.RFC3339Nano, string(rest[:end])); err != nil {
		return "", false
	}
	return strings.TrimPrefix(string(rest[end+1:]), " "), true
}

// splitLines keeps each line's newline; a last line without one is returned as well.
func splitLines(data []byte) [][]byte {
	var lines [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			lines = append(lines, data)
			break
		}
		lines = append(lines, data[:i+1])
		data = data[i+1:]
	}
	return lines
}

// runOutput is the output of the latest run of the container (previous=false) or of the run
// before it, without the kubelet's lines. ok=false when there is no such run.
func runOutput(data []byte, previous bool) ([][]byte, bool) {
	var runs [][][]byte
	var cur [][]byte
	started := false
	for _, line := range splitLines(data) {
		text, isMarker := markerText(line)
		if isMarker {
			if strings.HasPrefix(text, startMarker) {
				if started {
					runs = append(runs, cur)
				}
				cur, started = nil, true
			}
			continue
		}
		cur = append(cur, line)
	}
	if started || len(cur) > 0 {
		runs = append(runs, cur)
	}
	want := len(runs) - 1
	if previous {
		want--
	}
	if want < 0 {
		return nil, false
	}
	return runs[want], true
}

// tailOf is the last n lines (all for n < 0).
func tailOf(lines [][]byte, n int64) [][]byte {
	if n < 0 || int64(len(lines)) <= n {
		return lines
	}
	return lines[int64(len(lines))-n:]
}

// limitedWriter stops the copy once limit bytes went out (limit 0: no limit).
type limitedWriter struct {
	w     io.Writer
	left  int64
	limit bool
}

var errLimit = fmt.Errorf("limitBytes reached")

func (l *limitedWriter) Write(p []byte) (int, error) {
	if !l.limit {
		return l.w.Write(p)
	}
	if l.left <= 0 {
		return 0, errLimit
	}
	cut := p
	if int64(len(cut)) > l.left {
		cut = cut[:l.left]
	}
	n, err := l.w.Write(cut)
	l.left -= int64(n)
	if err == nil && len(cut) < len(p) {
		err = errLimit
	}
	return n, err
}

// followPoll is how often a followed log file is read for new output.
const followPoll = 200 * time.Millisecond

func (h *handler) containerLogs(w http.ResponseWriter, r *http.Request, ns, pod, container string) {
	opts, err := parseLogOptions(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	path, err := h.store.containerFile(ns, pod, container, ".log")
	if err != nil {
		writeError(w, err)
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		writeError(w, fmt.Errorf("container %q in pod %s/%s has no log: %w", container, ns, pod, errNotFound))
		return
	}
	lines, ok := runOutput(data, opts.previous)
	if !ok {
		http.Error(w, fmt.Sprintf("previous terminated container %q in pod %q not found", container, pod), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	out := &limitedWriter{w: w, left: opts.limitBytes, limit: opts.limitBytes > 0}
	for _, line := range tailOf(lines, opts.tail) {
		if _, err := out.Write(line); err != nil {
			return
		}
	}
	if !opts.follow || opts.previous {
		return
	}
	h.follow(r.Context(), w, out, path, int64(len(data)), ns, pod, container)
}

// follow streams what is appended to the log after offset until the container stops (its
// process is gone and nothing new arrived) or the client goes away.
func (h *handler) follow(ctx context.Context, w http.ResponseWriter, out io.Writer, path string, offset int64, ns, pod, container string) {
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	var partial []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(followPoll):
		}
		_, runErr := h.store.runningPid(ns, pod, container)
		chunk, next, err := readFrom(path, offset)
		if err != nil {
			return
		}
		offset = next
		partial = append(partial, chunk...)
		complete := bytes.LastIndexByte(partial, '\n') + 1
		for _, line := range splitLines(partial[:complete]) {
			if _, isMarker := markerText(line); isMarker {
				continue
			}
			if _, err := out.Write(line); err != nil {
				return
			}
		}
		partial = append([]byte(nil), partial[complete:]...)
		if flusher != nil && complete > 0 {
			flusher.Flush()
		}
		if runErr != nil && len(chunk) == 0 {
			if len(partial) > 0 {
				_, _ = out.Write(partial)
			}
			return
		}
	}
}

func readFrom(path string, offset int64) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, offset, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, offset, err
	}
	data, err := io.ReadAll(f)
	return data, offset + int64(len(data)), err
}
