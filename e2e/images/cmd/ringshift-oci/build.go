package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonRootID is the image's user and group (the chart's runAsUser), as in distroless images.
const nonRootID = 65532

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// buildReport is what `build` prints (and writes with --report): enough for the README table.
type buildReport struct {
	Reference    string `json:"reference"`
	Digest       string `json:"digest"`
	Platform     string `json:"platform"`
	Compressed   int64  `json:"compressedBytes"`   // manifest + config + gzip layer, as pulled
	Uncompressed int64  `json:"uncompressedBytes"` // the layer's tar, about the unpacked rootfs
	Files        int    `json:"files"`
}

// runBuild makes a one-layer image from a binary, the shared libraries it loads (from this
// machine, found with ldd), /etc/passwd and /etc/group with a non-root user, and pushes it.
func runBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	tag := fs.String("tag", "", "reference to push to, e.g. 127.0.0.1:15000/ringshift-node:dev")
	binary := fs.String("binary", "", "the program: the image's entrypoint")
	dest := fs.String("dest", "", "its path in the image (default /usr/local/bin/<name>)")
	report := fs.String("report", "", "also write the report as JSON to this file")
	insecure := fs.Bool("insecure", false, "plain HTTP to the registry (implied for loopback hosts)")
	asCmd := fs.Bool("cmd", false, "make the program the image's Cmd, with no Entrypoint (as in images whose\n"+
		"users pass a whole command line, e.g. `kubectl run --image=redis:7 -- redis-cli ...`)")
	var labels, files multiFlag
	fs.Var(&labels, "label", "KEY=VALUE image label (repeatable)")
	fs.Var(&files, "file", "SRC:DEST extra file (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tag == "" || *binary == "" {
		return errors.New("--tag and --binary are required")
	}
	if *dest == "" {
		*dest = "/usr/local/bin/" + filepath.Base(*binary)
	}
	arch, err := elfArch(*binary)
	if err != nil {
		return err
	}
	libs, err := sharedLibraries(*binary)
	if err != nil {
		return err
	}
	entries := baseEntries()
	add := func(src, dst string, mode int64) error {
		data, err := os.ReadFile(src) // follows symlinks: the image holds the file itself
		if err != nil {
			return err
		}
		entries = append(entries, fileEntry{path: dst, mode: mode, data: data})
		return nil
	}
	if err := add(*binary, *dest, 0o755); err != nil {
		return err
	}
	for _, lib := range libs {
		if err := add(lib, lib, 0o755); err != nil {
			return err
		}
	}
	for _, f := range files {
		src, dst, ok := strings.Cut(f, ":")
		if !ok || !path.IsAbs(dst) {
			return fmt.Errorf("--file %q: want SRC:/absolute/dest", f)
		}
		if err := add(src, dst, 0o644); err != nil {
			return err
		}
	}
	layerTar, err := writeTar(entries)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	labelMap := map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		labelMap[k] = v
	}
	user := fmt.Sprintf("%d:%d", nonRootID, nonRootID)
	entrypoint, cmd := []string{*dest}, []string(nil)
	if *asCmd {
		entrypoint, cmd = nil, []string{*dest}
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		// A fixed creation time: the same inputs give the same digest, so a rebuild that changed
		// nothing is not a new image (and IfNotPresent pulls keep their cache).
		Created: v1.Time{Time: time.Unix(0, 0).UTC()},
		RootFS:  v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: entrypoint,
			Cmd:        cmd,
			User:       user,
			WorkingDir: "/",
			Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
			Labels:     labelMap,
		},
	})
	if err != nil {
		return err
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   v1.Time{Time: time.Unix(0, 0).UTC()},
		CreatedBy: "ringshift-oci build " + filepath.Base(*binary),
	}})
	if err != nil {
		return err
	}
	var nameOpts []name.Option
	if *insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	ref, err := name.ParseReference(*tag, nameOpts...)
	if err != nil {
		return err
	}
	if !*insecure && isLoopbackHost(ref.Context().RegistryStr()) {
		if ref, err = name.ParseReference(*tag, name.Insecure); err != nil {
			return err
		}
	}
	if err := remote.Write(ref, img, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	rep, err := describe(ref.Name(), img, arch, int64(len(layerTar)), len(entries))
	if err != nil {
		return err
	}
	fmt.Printf("pushed %s@%s (linux/%s, %d files): %.1f MiB to pull, %.1f MiB unpacked\n",
		rep.Reference, rep.Digest, arch, rep.Files, mib(rep.Compressed), mib(rep.Uncompressed))
	if *report != "" {
		data, _ := json.MarshalIndent(rep, "", "  ")
		return os.WriteFile(*report, append(data, '\n'), 0o644)
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func describe(ref string, img v1.Image, arch string, tarSize int64, files int) (buildReport, error) {
	digest, err := img.Digest()
	if err != nil {
		return buildReport{}, err
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return buildReport{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return buildReport{}, err
	}
	total := int64(len(manifest)) + m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	return buildReport{Reference: ref, Digest: digest.String(), Platform: "linux/" + arch,
		Compressed: total, Uncompressed: tarSize, Files: files}, nil
}

// isLoopbackHost: 127.x.y.z:port, [::1]:port or localhost:port (plain HTTP is fine there).
func isLoopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// elfArch is the image architecture of an ELF binary: an image says what its binaries run on.
func elfArch(binary string) (string, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return "", fmt.Errorf("%s: %w", binary, err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	default:
		return "", fmt.Errorf("%s: unsupported machine %v", binary, f.Machine)
	}
}

// fileEntry is one tar entry; data == nil with dir set makes a directory.
type fileEntry struct {
	path     string
	mode     int64
	dir      bool
	uid, gid int
	data     []byte
}

// baseEntries: the directories and account files every image has. The user's home and /tmp
// are writable by it.
func baseEntries() []fileEntry {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonRootID, nonRootID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonRootID)
	return []fileEntry{
		{path: "/etc", dir: true, mode: 0o755},
		{path: "/etc/passwd", mode: 0o644, data: []byte(passwd)},
		{path: "/etc/group", mode: 0o644, data: []byte(group)},
		{path: "/etc/nsswitch.conf", mode: 0o644, data: []byte("passwd: files\ngroup: files\nhosts: files dns\n")},
		{path: "/home/nonroot", dir: true, mode: 0o700, uid: nonRootID, gid: nonRootID},
		{path: "/root", dir: true, mode: 0o700},
		{path: "/tmp", dir: true, mode: 0o1777},
		{path: "/proc", dir: true, mode: 0o555},
		{path: "/dev", dir: true, mode: 0o755},
	}
}

// writeTar writes entries in path order, parents first (created as 0755 directories when not
// listed), with zero times and numeric owners only: the same files give the same bytes.
func writeTar(entries []fileEntry) ([]byte, error) {
	byPath := map[string]fileEntry{}
	for _, e := range entries {
		p := path.Clean(e.path)
		for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
			if _, ok := byPath[d]; !ok {
				byPath[d] = fileEntry{path: d, dir: true, mode: 0o755}
			}
		}
		e.path = p
		byPath[p] = e
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := byPath[p]
		h := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: time.Unix(0, 0),
			Format:  tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !e.dir {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
