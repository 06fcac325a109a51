// Command go-example shows shoal's Go SDK: it fans out 20 tasks, gathers their results, keeps
// a Counter actor and calls it, and prints a summary. The binary is its own worker, so build
// it first and run the built file:
//
//	go build -o bin/shoal-go-example ./examples/go
//	bin/shoal run -- bin/shoal-go-example
//
// (`bin/shoal run -- go run ./examples/go` works too, while `go run` keeps its binary.)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/shoal-hpc/shoal/client"
)

// Counter is an actor's state: it lives in one worker process and its methods run there, one
// at a time.
type Counter struct {
	n int
}

// NewCounter is the actor's constructor.
func NewCounter(start int) (*Counter, error) {
	if start < 0 {
		return nil, errors.New("a counter starts at 0 or more")
	}
	return &Counter{n: start}, nil
}

// Add adds k and returns the new count.
func (c *Counter) Add(k int) (int, error) {
	c.n += k
	return c.n, nil
}

// Value returns the count.
func (c *Counter) Value() int { return c.n }

func main() {
	// Registration comes first: workers run this same main and must know the names before
	// client.Init, which in a worker serves tasks and never returns.
	client.Register("square", func(x int) (int, error) { return x * x, nil })
	client.RegisterActor("Counter", NewCounter)

	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "go-example:", err)
		os.Exit(1)
	}
}

func run() error {
	c, err := client.Init()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	res, err := c.ClusterResources()
	if err != nil {
		return err
	}
	fmt.Printf("cluster: %g CPUs\n", res["CPU"])

	// Fan out 20 tasks and gather them.
	refs := make([]client.ObjectRef, 20)
	for i := range refs {
		if refs[i], err = c.Submit("square", i); err != nil {
			return err
		}
	}
	var squares []int
	if err := c.GetAll(ctx, refs, &squares); err != nil {
		return fmt.Errorf("gather squares: %w", err)
	}
	sum := 0
	for _, s := range squares {
		sum += s
	}
	fmt.Printf("squares of 0..19: %v\n", squares)
	fmt.Printf("sum of squares: %d\n", sum)
	for _, r := range refs {
		r.Release()
	}

	// A task whose argument is another task's result: the worker receives the value.
	seven, err := c.Task("square").Options(client.CPUs(1), client.Retries(2)).Remote(7)
	if err != nil {
		return err
	}
	again, err := c.Submit("square", seven)
	if err != nil {
		return err
	}
	var v int
	if err := c.Get(ctx, again, &v); err != nil {
		return err
	}
	fmt.Printf("square(square(7)): %d\n", v)

	// An actor keeps state between calls; its calls run in order.
	counter, err := c.NewActor("Counter", 10, client.Name("counter"))
	if err != nil {
		return err
	}
	var last client.ObjectRef
	for k := 1; k <= 5; k++ {
		if last, err = counter.Call("Add", k); err != nil {
			return err
		}
	}
	var total int
	if err := c.Get(ctx, last, &total); err != nil {
		return fmt.Errorf("counter: %w", err)
	}
	same, err := c.GetActor("counter")
	if err != nil {
		return err
	}
	ref, err := same.Call("Value")
	if err != nil {
		return err
	}
	var value int
	if err := c.Get(ctx, ref, &value); err != nil {
		return err
	}
	fmt.Printf("counter: %d after adding 1..5 to 10 (looked up by name: %d)\n", total, value)
	if err := c.Kill(counter); err != nil {
		return err
	}
	fmt.Println("summary: 20 tasks, 1 chained task, 1 actor with 6 calls: ok")
	return nil
}
