// etcd at the version this Kubernetes release itself requires (go.etcd.io/etcd/server/v3 in
// the module graph), built as an ordinary Go module program for ringshift's e2e harness.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
