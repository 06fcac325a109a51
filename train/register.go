package train

import (
	"sync"

	"github.com/shoal-hpc/shoal/client"
)

var once sync.Once

// Register registers RankActor with the Go SDK under ActorType. Both the driver (shoal
// train) and its workers (the shoal binary started by an agent) must call it before
// client.Init; calling it again does nothing.
func Register() {
	once.Do(func() { client.RegisterActor(ActorType, NewRankActor) })
}
