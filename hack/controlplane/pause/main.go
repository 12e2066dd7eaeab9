// Command pause is the pod sandbox process of the test node: it holds the pod's namespaces open
// and exits on SIGTERM or SIGINT, as the registry's pause image does. Built here because the test
// node pulls no image from a registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	// As PID 1 of the sandbox it also reaps orphans handed to it (shared PID namespace pods).
	signal.Ignore(syscall.SIGCHLD)
	<-stop
}
