// Command ringshift-oci builds and serves container images without a container daemon, for the
// local e2e harness and `make images`:
//
//	ringshift-oci registry --listen 127.0.0.1:15000 --dir STATE/registry
//	ringshift-oci build --tag 127.0.0.1:15000/ringshift-node:dev --binary target/release/ringshift-node
//
// See e2e/images/README.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "registry":
		err = runRegistry(os.Args[2:])
	case "build":
		err = runBuild(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ringshift-oci %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ringshift-oci registry|build [flags] (-h for the flags of each)")
	os.Exit(2)
}
