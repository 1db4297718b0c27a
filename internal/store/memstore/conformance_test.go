package memstore_test

import (
	"testing"

	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/memstore"
	"github.com/ternmq/tern/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		st := memstore.New()
		return st, func() store.Store { return st }
	})
}
