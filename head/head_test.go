package head

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestActorNamesAndDurability(t *testing.T) {
	p := filepath.Join(t.TempDir(), "head.db")
	h, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddActor(Actor{ID: "a1", Job: "j", Name: "svc", NS: "", State: "ALIVE", Meta: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	err = h.AddActor(Actor{ID: "a2", Job: "j", Name: "svc", NS: "", State: "PENDING"})
	if !errors.Is(err, ErrNameTaken) {
		t.Fatalf("duplicate name: got %v", err)
	}
	if err := h.AddActor(Actor{ID: "a3", Job: "j", Name: "svc", NS: "other", State: "PENDING"}); err != nil {
		t.Fatalf("same name in another namespace: %v", err)
	}
	if err := h.JoinNode(Node{ID: "n1", Addr: "tcp:1.2.3.4:5", Resources: map[string]float64{"CPU": 2}}); err != nil {
		t.Fatal(err)
	}
	h.StartJob("j", 42, "python")
	h.Close()

	h, err = Open(p) // what the head wrote survives a restart
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	a, err := h.LookupActor("", "svc")
	if err != nil || a.ID != "a1" || a.Meta[0] != 1 {
		t.Fatalf("lookup after reopen: %+v %v", a, err)
	}
	if err := h.SetActorState("a1", "DEAD", 0, "killed"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LookupActor("", "svc"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a dead actor's name must be free: %v", err)
	}
	if err := h.AddActor(Actor{ID: "a4", Job: "j", Name: "svc", State: "PENDING"}); err != nil {
		t.Fatalf("reusing a dead actor's name: %v", err)
	}
	ns, _ := h.Nodes()
	if len(ns) != 1 || ns[0].Resources["CPU"] != 2 || !ns[0].Alive {
		t.Fatalf("nodes %+v", ns)
	}
	js, _ := h.Jobs()
	if len(js) != 1 || js[0].PID != 42 || js[0].Status != "RUNNING" {
		t.Fatalf("jobs %+v", js)
	}
}

func TestPlacementGroups(t *testing.T) {
	h, err := Open(filepath.Join(t.TempDir(), "head.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.AddPlacementGroup(PlacementGroup{ID: "p", Job: "j", Strategy: "PACK", Bundles: []map[string]float64{{"CPU": 1}}, State: "PENDING"})
	h.SetPlacementGroupState("p", "CREATED")
	pgs, _ := h.PlacementGroups()
	if len(pgs) != 1 || pgs[0].State != "CREATED" || pgs[0].Bundles[0]["CPU"] != 1 {
		t.Fatalf("%+v", pgs)
	}
}
