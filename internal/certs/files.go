package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// outFile is one file to write.
type outFile struct {
	path string
	data []byte
	mode os.FileMode
}

// writeNew creates every file exclusively, so that nothing already there is overwritten even by a
// concurrent writer. If any file exists (reported wrapping existsErr) or fails, the files this call
// created are removed again, leaving no half-made set behind.
func writeNew(files []outFile, existsErr error) (err error) {
	var made []string
	defer func() {
		if err != nil {
			for _, p := range made {
				_ = os.Remove(p)
			}
		}
	}()
	for _, f := range files {
		// O_EXCL with the final mode: a private key is never readable by others, not even briefly.
		fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", f.path, existsErr)
		}
		if err != nil {
			return err
		}
		made = append(made, f.path)
		if err := finish(fh, f); err != nil {
			return err
		}
	}
	return nil
}

// writeReplace writes each file to a temporary file beside it and renames it into place, so a
// reader — a server reloading on SIGHUP — sees either the old or the new file, never a torn one.
func writeReplace(files []outFile) error {
	for _, f := range files {
		// CreateTemp makes the file with mode 0600, so a key is private from the start.
		fh, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".tmp*")
		if err != nil {
			return err
		}
		tmp := fh.Name()
		if err := finish(fh, f); err != nil {
			_ = os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, f.path); err != nil {
			_ = os.Remove(tmp)
			return err
		}
	}
	return nil
}

// finish writes the data, sets the mode exactly — keys 0600, certificates (public data) 0644
// whatever the umask or CreateTemp's 0600 — and syncs, so a crash right after cannot leave an
// empty key file behind.
func finish(fh *os.File, f outFile) error {
	_, err := fh.Write(f.data)
	if err == nil {
		err = fh.Chmod(f.mode)
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", f.path, err)
	}
	return nil
}
