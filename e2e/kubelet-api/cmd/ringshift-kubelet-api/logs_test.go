package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sampleLog = "[kubelet 2026-12-07T10:00:00.1Z] starting container node of pod ns/p (uid u1): /bin/x []\n" +
	"first run 1\nfirst run 2\n" +
	"[kubelet 2026-12-07T10:00:05Z] container exited: code 1\n" +
	"[kubelet 2026-12-07T10:00:06.123456789Z] starting container node of pod ns/p (uid u1): /bin/x []\n" +
	"second run 1\n[kubelet said] this is container output\nsecond run 3\n"

func lines(ls [][]byte) string {
	var b strings.Builder
	for _, l := range ls {
		b.Write(l)
	}
	return b.String()
}

func TestRunOutputSplitsRunsAndDropsKubeletLines(t *testing.T) {
	cur, ok := runOutput([]byte(sampleLog), false)
	if !ok || lines(cur) != "second run 1\n[kubelet said] this is container output\nsecond run 3\n" {
		t.Fatalf("current run: %q %v", lines(cur), ok)
	}
	prev, ok := runOutput([]byte(sampleLog), true)
	if !ok || lines(prev) != "first run 1\nfirst run 2\n" {
		t.Fatalf("previous run: %q %v", lines(prev), ok)
	}
	one := "[kubelet 2026-12-07T10:00:00Z] starting container c of pod a/b (uid u): x []\nonly\n"
	if _, ok := runOutput([]byte(one), true); ok {
		t.Fatal("a container that ran once has no previous run")
	}
	// A log without markers (written before the kubelet) is one run.
	if cur, ok := runOutput([]byte("a\nb"), false); !ok || lines(cur) != "a\nb" {
		t.Fatalf("unmarked log: %q", lines(cur))
	}
}

func TestTailOf(t *testing.T) {
	ls := splitLines([]byte("a\nb\nc\n"))
	for n, want := range map[int64]string{-1: "a\nb\nc\n", 0: "", 2: "b\nc\n", 9: "a\nb\nc\n"} {
		if got := lines(tailOf(ls, n)); got != want {
			t.Errorf("tail %d = %q, want %q", n, got, want)
		}
	}
}

func TestParseLogOptions(t *testing.T) {
	o, err := parseLogOptions(url.Values{"follow": {"true"}, "tailLines": {"5"}, "limitBytes": {"10"}})
	if err != nil || !o.follow || o.tail != 5 || o.limitBytes != 10 || o.previous {
		t.Fatalf("%+v %v", o, err)
	}
	if o, _ := parseLogOptions(url.Values{}); o.tail != -1 || o.follow {
		t.Fatalf("defaults: %+v", o)
	}
	for _, bad := range []url.Values{{"tailLines": {"-1"}}, {"limitBytes": {"0"}}, {"follow": {"yes"}}, {"timestamps": {"true"}}} {
		if _, err := parseLogOptions(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestLimitedWriterStopsAtTheLimit(t *testing.T) {
	var b strings.Builder
	w := &limitedWriter{w: &b, left: 5, limit: true}
	if _, err := w.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("defg")); err != errLimit {
		t.Fatalf("want errLimit, got %v", err)
	}
	if b.String() != "abcde" {
		t.Fatalf("wrote %q", b.String())
	}
}

// podFixture makes STATE/pods/ns_p with a log and, if pid > 0, a pid file for container c.
func podFixture(t *testing.T, log string, pid int) *store {
	t.Helper()
	state := t.TempDir()
	dir := filepath.Join(state, "pods", "ns_p")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "c.log"), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	if pid > 0 {
		start, ok := procStart(pid)
		if !ok {
			t.Fatalf("no start time for %d", pid)
		}
		writePidFile(t, filepath.Join(dir, "c.pid"), pid, start)
	}
	return newStore(state)
}

func writePidFile(t *testing.T, path string, pid int, start uint64) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join([]string{itoa(pid), utoa(start)}, " ")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestContainerLogsEndpoint(t *testing.T) {
	h := newHandler(podFixture(t, sampleLog, 0))
	rec := get(t, h, "/containerLogs/ns/p/c?tailLines=2")
	if rec.Code != 200 || rec.Body.String() != "[kubelet said] this is container output\nsecond run 3\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
	if rec := get(t, h, "/containerLogs/ns/p/c?previous=true"); rec.Body.String() != "first run 1\nfirst run 2\n" {
		t.Fatalf("previous: %q", rec.Body.String())
	}
	if rec := get(t, h, "/containerLogs/ns/p/c?limitBytes=6"); rec.Body.String() != "second" {
		t.Fatalf("limitBytes: %q", rec.Body.String())
	}
	if rec := get(t, h, "/containerLogs/ns/nope/c"); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown pod: %d", rec.Code)
	}
	if rec := get(t, h, "/containerLogs/ns/p/other"); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown container: %d", rec.Code)
	}
	if rec := get(t, h, "/containerLogs/ns/p/c?timestamps=true"); rec.Code != http.StatusBadRequest {
		t.Fatalf("timestamps: %d", rec.Code)
	}
}

func TestFollowStreamsNewOutputAndEndsWhenTheContainerStops(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	// The "container" is this test's own process until the pid file is made stale.
	s := podFixture(t, "[kubelet 2026-12-07T10:00:00Z] starting container c of pod ns/p (uid u): x []\nold\n", os.Getpid())
	h := newHandler(s)
	srv := httptest.NewServer(h)
	defer srv.Close()
	logPath := filepath.Join(s.podsDir, "ns_p", "c.log")
	go func() {
		time.Sleep(300 * time.Millisecond)
		f, _ := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
		_, _ = f.WriteString("new 1\n[kubelet 2026-12-07T10:00:09Z] stopping container: deleted\nnew ")
		_, _ = f.WriteString("2\n")
		_ = f.Close()
		time.Sleep(300 * time.Millisecond)
		writePidFile(t, filepath.Join(s.podsDir, "ns_p", "c.pid"), os.Getpid(), 1) // no longer running
	}()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(srv.URL + "/containerLogs/ns/p/c?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := new(strings.Builder)
	if _, err := io.Copy(body, resp.Body); err != nil {
		t.Fatal(err)
	}
	if body.String() != "old\nnew 1\nnew 2\n" {
		t.Fatalf("followed %q", body.String())
	}
}
