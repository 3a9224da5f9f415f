package main

import (
	"reflect"
	"testing"
)

func TestParseLddKeepsLibrariesAndLoaderSkipsVdso(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffc5c9f3000)\n" +
		"\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1b2a000000)\n" +
		"\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f1b29f00000)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1b29d00000)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f1b2a100000)\n" +
		"\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f1b29f00000)\n"
	got, err := parseLdd(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/lib/x86_64-linux-gnu/libgcc_s.so.1",
		"/lib/x86_64-linux-gnu/libm.so.6",
		"/lib/x86_64-linux-gnu/libc.so.6",
		"/lib64/ld-linux-x86-64.so.2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestParseLddReportsAMissingLibrary(t *testing.T) {
	if _, err := parseLdd("\tlibssl.so.3 => not found\n"); err == nil {
		t.Fatal("a missing library must be an error")
	}
}

func TestParseLddOfAStaticBinaryIsEmpty(t *testing.T) {
	got, err := parseLdd("\tstatically linked\n")
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v", got, err)
	}
}
