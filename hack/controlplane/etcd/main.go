// Command etcd is the upstream etcd server, built from its Go module so that the
// local control plane needs no downloaded release archive.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
