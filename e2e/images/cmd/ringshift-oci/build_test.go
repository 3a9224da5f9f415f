package main

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
)

func TestWriteTarAddsParentsSortsAndIsDeterministic(t *testing.T) {
	entries := []fileEntry{
		{path: "/usr/local/bin/app", mode: 0o755, data: []byte("elf")},
		{path: "/etc/passwd", mode: 0o644, data: []byte("root")},
	}
	a, err := writeTar(entries)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := writeTar([]fileEntry{entries[1], entries[0]})
	if !bytes.Equal(a, b) {
		t.Fatal("the same files in another order must give the same tar")
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	want := []string{"etc/", "etc/passwd", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/app"}
	if len(names) != len(want) {
		t.Fatalf("got %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("got %v, want %v", names, want)
		}
	}
}

func TestLoopbackHosts(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:15000": true, "localhost:5000": true, "[::1]:5000": true,
		"registry.example:443": false, "10.0.0.1:5000": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("%s: got %v", host, got)
		}
	}
}
