package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// A node that left its cluster notes it in its raft directory (leftMarker). Its raft state is
// then worthless: the others removed it from their configuration, so a restart that resumed it
// would wait forever for a cluster that no longer counts it. The next Open drops that state, and
// the node joins again through Join like a new one (the cluster's state comes by snapshot and
// the log; its sessions are taken up from the replica as for any node).

const leftMarker = "left"

// markLeft notes that the node in dir left its cluster.
func markLeft(dir string) error {
	f, err := os.Create(filepath.Join(dir, leftMarker))
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// forgetLeft drops the raft state of a node that left, before Open reads it. Without Join it
// refuses: the node would otherwise start a new cluster of its own, which is rarely meant.
func forgetLeft(cfg Config) error {
	marker := filepath.Join(cfg.Dir, leftMarker)
	if _, err := os.Stat(marker); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if len(cfg.Join) == 0 {
		return fmt.Errorf("cluster: node %s left its cluster: start it with --join to rejoin, or remove %s to start a new cluster", cfg.NodeID, cfg.Dir)
	}
	for _, sub := range []string{"log", "snapshots"} {
		if err := os.RemoveAll(filepath.Join(cfg.Dir, sub)); err != nil {
			return fmt.Errorf("cluster: dropping the state of a node that left: %w", err)
		}
	}
	cfg.Log.Info("cluster: this node left its cluster before; it joins again", "node", cfg.NodeID)
	return os.Remove(marker)
}
