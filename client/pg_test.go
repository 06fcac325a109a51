package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shoal-hpc/shoal/client"
)

func TestPlacementGroupsEndToEnd(t *testing.T) { scenario(t, "pg") }

// scenarioPG: a gang of two bundles holds half the CPUs each; actors placed in them run; a
// group larger than the cluster is infeasible at once; one that does not fit now waits, and
// fits once the first is removed.
func scenarioPG(ctx context.Context, c *client.Client) error {
	total, err := c.ClusterResources()
	if err != nil {
		return err
	}
	half := total["CPU"] / 2
	pg, err := c.NewPlacementGroup(ctx, []map[string]float64{{"CPU": half}, {"CPU": half}}, "PACK", "gang")
	if err != nil {
		return fmt.Errorf("a gang of the whole cluster: %w", err)
	}
	if pg.Bundles() != 2 {
		return fmt.Errorf("Bundles() = %d, want 2", pg.Bundles())
	}
	for i := 0; i < 2; i++ {
		a, err := c.NewActor("Acc", fmt.Sprint("bundle", i), client.InBundle(pg, i), client.CPUs(half))
		if err != nil {
			return err
		}
		ref, err := a.Call("Push", "x")
		if err != nil {
			return err
		}
		var n int
		if err := c.Get(ctx, ref, &n); err != nil || n != 2 {
			return fmt.Errorf("actor in bundle %d: Push = %d, %v", i, n, err)
		}
	}
	_, err = c.NewPlacementGroup(ctx, []map[string]float64{{"CPU": total["CPU"]}, {"CPU": total["CPU"]}}, "PACK", "")
	if !errors.Is(err, client.ErrInfeasible) {
		return fmt.Errorf("two bundles of the whole cluster: err = %v, want ErrInfeasible", err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = c.NewPlacementGroup(short, []map[string]float64{{"CPU": half}}, "PACK", "")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("a bundle while the cluster is reserved: err = %v, want a time-out", err)
	}
	if err := pg.Remove(); err != nil {
		return err
	}
	if _, err := c.NewPlacementGroup(ctx, []map[string]float64{{"CPU": half}}, "STRICT_PACK", ""); err != nil {
		return fmt.Errorf("after Remove: %w", err)
	}
	return nil
}
