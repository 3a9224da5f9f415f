package main

import (
	"strconv"
	"testing"
)

func itoa(i int) string    { return strconv.Itoa(i) }
func utoa(u uint64) string { return strconv.FormatUint(u, 10) }

func TestParsePidFile(t *testing.T) {
	if pid, start, ok := parsePidFile("12 345\n"); !ok || pid != 12 || start != 345 {
		t.Fatalf("%d %d %v", pid, start, ok)
	}
	for _, bad := range []string{"", "12", "x 1", "0 1", "-3 1", "1 2 3"} {
		if _, _, ok := parsePidFile(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseStatStartSkipsACommandWithSpacesAndParens(t *testing.T) {
	stat := "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10"
	if v, ok := parseStatStart(stat); !ok || v != 98765 {
		t.Fatalf("%d %v", v, ok)
	}
	if _, ok := parseStatStart("42 (x) S 1"); ok {
		t.Fatal("short stat accepted")
	}
}

func TestValidNameKeepsLookupsInsideThePodsDir(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "a\x00"} {
		if validName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
	if !validName("node-0") {
		t.Error("a pod name refused")
	}
}
