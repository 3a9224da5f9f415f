package main

import (
	"io"
	"net/http"
)

// maxManifest bounds a manifest body (the distribution spec suggests 4 MiB).
const maxManifest = 4 << 20

func readAll(r *http.Request) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r.Body, maxManifest))
}

type nopCloser struct{ io.Reader }

func (nopCloser) Close() error { return nil }
