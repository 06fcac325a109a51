// Command handshake_driver is the victim's driver in test/security/handshake.sh: connected
// before the flood, it runs tasks one after another for the given number of seconds and says
// how many were served. The binary is its own worker.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/shoal-hpc/shoal/client"
)

func main() {
	client.Register("inc", func(x int) (int, error) { return x + 1, nil })
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "handshake_driver:", err)
		os.Exit(1)
	}
}

func run() error {
	c, err := client.Init()
	if err != nil {
		return err
	}
	defer c.Close()
	if len(os.Args) != 2 {
		return fmt.Errorf("usage: handshake_driver SECONDS")
	}
	secs, err := strconv.ParseFloat(os.Args[1], 64)
	if err != nil {
		return err
	}
	ctx := context.Background()
	task := func(n int) error {
		r, err := c.Submit("inc", n)
		if err != nil {
			return err
		}
		defer r.Release()
		var v int
		if err := c.Get(ctx, r, &v); err != nil {
			return err
		}
		if v != n+1 {
			return fmt.Errorf("inc(%d) = %d", n, v)
		}
		return nil
	}
	if err := task(0); err != nil {
		return err
	}
	fmt.Println("ready")
	n, end := 0, time.Now().Add(time.Duration(secs*float64(time.Second)))
	for time.Now().Before(end) {
		if err := task(n); err != nil {
			return fmt.Errorf("task %d: %w", n, err)
		}
		n++
	}
	fmt.Printf("served %d tasks\n", n)
	return nil
}
