// Command ringshift-kubelet-api is the kubelet API of ringshift's process kubelet: the HTTPS
// endpoint the kube-apiserver calls for `kubectl logs`, `exec`, `attach` and `port-forward`.
// The Rust kubelet (e2e/src/kubelet) starts it and keeps, per pod, a directory
// STATE/pods/<namespace>_<pod> with each container's log, pid file and (for `stdin: true`) a
// stdin socket; this program reads those. The SPDY (and WebSocket) protocols are the upstream
// streaming library's (k8s.io/cri-streaming); see e2e/README.md.
//
//	ringshift-kubelet-api --listen 127.0.0.1:10242 --state-dir /tmp/ringshift-k8s-2 \
//	  --cert kubelet.crt --key kubelet.key --client-ca kubelet-ca.crt
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "ringshift-kubelet-api: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ringshift-kubelet-api", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:10250", "address to serve HTTPS on (loopback)")
	stateDir := fs.String("state-dir", "/tmp/ringshift-k8s", "the process kubelet's state dir")
	cert := fs.String("cert", "", "serving certificate (PEM)")
	key := fs.String("key", "", "serving key (PEM)")
	clientCA := fs.String("client-ca", "", "CA that signs the apiserver's client certificate; clients without one are refused")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cert == "" || *key == "" || *clientCA == "" {
		return errors.New("--cert, --key and --client-ca are required")
	}
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		return fmt.Errorf("loading serving certificate: %w", err)
	}
	caPEM, err := os.ReadFile(*clientCA)
	if err != nil {
		return fmt.Errorf("reading client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no certificate in %s", *clientCA)
	}
	srv := &http.Server{
		Addr:    *listen,
		Handler: newHandler(newStore(*stateDir)),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{pair},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
			// SPDY upgrades need HTTP/1.1.
			NextProtos: []string{"http/1.1"},
		},
		ReadHeaderTimeout: 30 * time.Second,
	}
	log.Printf("serving the kubelet API on https://%s (state dir %s)", *listen, *stateDir)
	return srv.ListenAndServeTLS("", "")
}
