package main

import (
	"errors"
	"net/http"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// The real kubelet's stream timeouts (pkg/kubelet/server).
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
)

type handler struct {
	store *store
}

// newHandler routes the kubelet API paths the apiserver uses for pod subresources (with and
// without the pod UID segment, as the real kubelet does).
func newHandler(s *store) http.Handler {
	h := &handler{store: s}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		h.containerLogs(w, r, r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container"))
	})
	for _, p := range []string{"/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, h.exec)
	}
	for _, p := range []string{"/attach/{ns}/{pod}/{container}", "/attach/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, h.attach)
	}
	for _, p := range []string{"/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"} {
		mux.HandleFunc(p, h.portForward)
	}
	return mux
}

// writeError answers 404 for unknown pods and containers, 500 otherwise.
func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, errNotFound) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
}

func (h *handler) exec(w http.ResponseWriter, r *http.Request) {
	ns, pod, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "no command given", http.StatusBadRequest)
		return
	}
	if _, err := h.store.runningPid(ns, pod, container); err != nil {
		writeError(w, err)
		return
	}
	remotecommand.ServeExec(w, r, &execTarget{store: h.store, ns: ns, pod: pod}, ns+"/"+pod, r.PathValue("uid"),
		container, cmd, opts, streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (h *handler) attach(w http.ResponseWriter, r *http.Request) {
	ns, pod, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := h.store.runningPid(ns, pod, container); err != nil {
		writeError(w, err)
		return
	}
	remotecommand.ServeAttach(w, r, &attachTarget{store: h.store, ns: ns, pod: pod}, ns+"/"+pod, r.PathValue("uid"),
		container, opts, streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (h *handler) portForward(w http.ResponseWriter, r *http.Request) {
	ns, pod := r.PathValue("ns"), r.PathValue("pod")
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := h.store.info(ns, pod); err != nil {
		writeError(w, err)
		return
	}
	portforward.ServePortForward(w, r, &forwardTarget{store: h.store, ns: ns, pod: pod}, ns+"/"+pod, r.PathValue("uid"),
		opts, streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}
