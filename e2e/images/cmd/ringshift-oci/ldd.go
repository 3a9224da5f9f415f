package main

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// sharedLibraries lists the absolute paths of the shared objects `ldd` resolves for a binary,
// the dynamic loader included, so that the image carries exactly what the binary loads.
func sharedLibraries(binary string) ([]string, error) {
	out, err := exec.Command("ldd", binary).CombinedOutput()
	text := string(out)
	if err != nil {
		// A static binary: ldd says so and exits non-zero; it needs nothing.
		if strings.Contains(text, "not a dynamic executable") || strings.Contains(text, "statically linked") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s", binary, err, strings.TrimSpace(text))
	}
	return parseLdd(text)
}

// parseLdd reads ldd's output. Lines look like
//
//	linux-vdso.so.1 (0x00007ffd...)                         (in the kernel: skipped)
//	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)    (a library)
//	/lib64/ld-linux-x86-64.so.2 (0x...)                     (the loader)
//	libfoo.so => not found                                  (an error)
func parseLdd(text string) ([]string, error) {
	var libs []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.Contains(line, "statically linked") {
			continue
		}
		var path string
		if name, rest, ok := strings.Cut(line, "=>"); ok {
			rest = strings.TrimSpace(rest)
			if strings.HasPrefix(rest, "not found") {
				return nil, fmt.Errorf("shared library %s not found", strings.TrimSpace(name))
			}
			path, _, _ = strings.Cut(rest, " (")
		} else {
			path, _, _ = strings.Cut(line, " (")
		}
		path = strings.TrimSpace(path)
		if !filepath.IsAbs(path) {
			continue // the vdso
		}
		if !seen[path] {
			seen[path] = true
			libs = append(libs, path)
		}
	}
	return libs, sc.Err()
}
