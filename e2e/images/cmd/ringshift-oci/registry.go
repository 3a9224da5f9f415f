package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/registry"
)

// runRegistry serves an OCI distribution registry on a loopback address. Blobs are files under
// DIR/blobs (go-containerregistry's disk blob handler); that handler keeps manifests in memory,
// so every accepted manifest PUT is also journalled under DIR/manifests and replayed at start:
// a restarted registry still serves what was pushed to it.
func runRegistry(args []string) error {
	fs := flag.NewFlagSet("registry", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:15000", "loopback address:port to serve on")
	dir := fs.String("dir", "", "storage directory (blobs and the manifest journal)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir is required")
	}
	if err := requireLoopback(*listen); err != nil {
		return err
	}
	blobs := filepath.Join(*dir, "blobs")
	journal := filepath.Join(*dir, "manifests")
	for _, d := range []string{blobs, journal} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	inner := registry.New(
		registry.WithBlobHandler(registry.NewDiskBlobHandler(blobs)),
		registry.Logger(log.New(os.Stderr, "", log.LstdFlags)),
	)
	j := &manifestJournal{dir: journal, next: inner}
	n, err := j.replay()
	if err != nil {
		return fmt.Errorf("replaying manifests: %w", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log.Printf("serving an OCI registry on http://%s (storage %s, %d manifests replayed)", ln.Addr(), *dir, n)
	return http.Serve(ln, j)
}

// requireLoopback refuses anything but a loopback IP: the registry has no authentication.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address; the registry has no authentication", addr)
	}
	return nil
}

// journalEntry is one accepted manifest PUT.
type journalEntry struct {
	Path        string `json:"path"`
	ContentType string `json:"contentType"`
	Body        []byte `json:"body"`
}

type manifestJournal struct {
	dir  string
	next http.Handler
	mu   sync.Mutex
	seq  int
}

func isManifestPath(p string) bool {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	return len(parts) >= 4 && parts[0] == "v2" && parts[len(parts)-2] == "manifests"
}

func (j *manifestJournal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut || !isManifestPath(r.URL.Path) {
		j.next.ServeHTTP(w, r)
		return
	}
	body, err := readAll(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec := httptest.NewRecorder()
	r.Body = nopCloser{bytes.NewReader(body)}
	j.next.ServeHTTP(rec, r)
	if rec.Code/100 == 2 {
		if err := j.record(journalEntry{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Body: body}); err != nil {
			log.Printf("journalling manifest %s: %v", r.URL.Path, err)
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// record writes one entry as its own file (atomically, by rename); replay applies them in order.
func (j *manifestJournal) record(e journalEntry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	name := filepath.Join(j.dir, fmt.Sprintf("%012d.json", j.seq))
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

func (j *manifestJournal) replay() (int, error) {
	files, err := filepath.Glob(filepath.Join(j.dir, "*.json"))
	if err != nil {
		return 0, err
	}
	// Zero-padded sequence numbers: lexical order is push order.
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		var e journalEntry
		if err := json.Unmarshal(data, &e); err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		req := httptest.NewRequest(http.MethodPut, e.Path, bytes.NewReader(e.Body))
		req.Header.Set("Content-Type", e.ContentType)
		rec := httptest.NewRecorder()
		j.next.ServeHTTP(rec, req)
		if rec.Code/100 != 2 {
			return 0, fmt.Errorf("%s: registry answered %d: %s", f, rec.Code, rec.Body.String())
		}
		j.seq++
	}
	return len(files), nil
}
