package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// store finds what the Rust kubelet keeps for each pod under STATE/pods/<namespace>_<pod>.
type store struct {
	podsDir string
}

func newStore(stateDir string) *store {
	return &store{podsDir: filepath.Join(stateDir, "pods")}
}

// errNotFound: no such pod or container on this node (HTTP 404).
var errNotFound = errors.New("not found")

// podInfo is pod-info.json, written by the kubelet when it sets a pod up.
type podInfo struct {
	UID string `json:"uid"`
	IP  string `json:"ip"`
}

// validName rejects path components that could leave the pods directory.
func validName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

func (s *store) podDir(ns, pod string) (string, error) {
	if !validName(ns) || !validName(pod) {
		return "", fmt.Errorf("pod %s/%s: %w", ns, pod, errNotFound)
	}
	dir := filepath.Join(s.podsDir, ns+"_"+pod)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("pod %s/%s: %w", ns, pod, errNotFound)
	}
	return dir, nil
}

func (s *store) info(ns, pod string) (podInfo, error) {
	dir, err := s.podDir(ns, pod)
	if err != nil {
		return podInfo{}, err
	}
	var info podInfo
	data, err := os.ReadFile(filepath.Join(dir, "pod-info.json"))
	if err != nil {
		return info, fmt.Errorf("pod %s/%s has no address yet: %w", ns, pod, errNotFound)
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return info, fmt.Errorf("pod %s/%s: pod-info.json: %v", ns, pod, err)
	}
	return info, nil
}

// containerFile is the path of one of a container's files (log, pid, stdin socket).
func (s *store) containerFile(ns, pod, container, suffix string) (string, error) {
	dir, err := s.podDir(ns, pod)
	if err != nil {
		return "", err
	}
	if !validName(container) {
		return "", fmt.Errorf("container %q: %w", container, errNotFound)
	}
	return filepath.Join(dir, container+suffix), nil
}

// runningPid is the pid of the container's process if it runs, checked against the start time
// in its pid file so that a reused pid is never mistaken for the container.
func (s *store) runningPid(ns, pod, container string) (int, error) {
	path, err := s.containerFile(ns, pod, container, ".pid")
	if err != nil {
		return 0, err
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("container %s is not running in pod %s/%s: %w", container, ns, pod, errNotFound)
	}
	pid, start, ok := parsePidFile(string(text))
	if !ok {
		return 0, fmt.Errorf("malformed pid file %s", path)
	}
	if !alive(pid, start) {
		return 0, fmt.Errorf("container %s is not running in pod %s/%s: %w", container, ns, pod, errNotFound)
	}
	return pid, nil
}

// parsePidFile reads "PID STARTTIME" (as process.rs writes it).
func parsePidFile(s string) (pid int, start uint64, ok bool) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, false
	}
	p, err1 := strconv.Atoi(f[0])
	st, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || p <= 0 {
		return 0, 0, false
	}
	return p, st, true
}

// procStart is field 22 of /proc/PID/stat (start time in clock ticks since boot).
func procStart(pid int) (uint64, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	return parseStatStart(string(data))
}

func parseStatStart(stat string) (uint64, bool) {
	i := strings.LastIndex(stat, ") ")
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+2:])
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

func alive(pid int, start uint64) bool {
	now, ok := procStart(pid)
	return ok && now == start
}
