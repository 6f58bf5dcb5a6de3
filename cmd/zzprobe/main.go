package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/sgload/sgload/internal/hostile"
)

func main() {
	bin := os.Args[1]
	data, _ := os.ReadFile("testdata/events/sample-2000.ndjson")
	var lines [][]byte
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		lines = append(lines, []byte(l))
	}
	for len(hostile.Bodies(lines, 768<<10)) < 8 {
		lines = append(lines, lines...)
	}
	bodies := hostile.Bodies(lines, 768<<10)
	s, _ := hostile.NewSigner()
	os.RemoveAll("/tmp/zzspool")
	cmd := exec.Command(bin, "--log-level", "error", "serve", "--spool", "/tmp/zzspool", "--addr", "127.0.0.1:18091", "--min-free-bytes", "256MiB", "--debug-addr", "127.0.0.1:16061")
	cmd.Env = append(os.Environ(), "SGLOAD_SIGNING_KEYS="+s.PublicKey)
	cmd.Stderr = os.Stderr
	cmd.Start()
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	time.Sleep(time.Second)
	go func() {
		time.Sleep(2 * time.Second)
		exec.Command("curl", "-s", "-o", "/tmp/zz.prof", "http://127.0.0.1:16061/debug/pprof/profile?seconds=6").Run()
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	res := hostile.Valid(context.Background(), client, "http://127.0.0.1:18091/webhook/sendgrid", s, bodies, 50, 10*time.Second)
	fmt.Println(res.Sent, res.Statuses, res.Percentile(0.5), res.Percentile(0.99))
	_, peak, _ := hostile.Memory(cmd.Process.Pid)
	fmt.Println("peak", peak>>20)
}
