package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"
	"sort"

	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/wal"
)

// Pebble replays its write-ahead logs at open and stops quietly where the newest one stops being
// readable, taking whatever follows for a write that a crash cut short (a torn tail). It can tell
// that the unreadable part was in fact damage only when a later block holds a record that says it
// was synced past that point, so damage in the last 32 KiB block, or a log cut short after a
// clean stop, is replayed as far as it reads and the rest is silently gone. tern reads the logs
// itself before Pebble does (read-only), with Pebble's own reader, to say what is skipped and
// where, and to refuse what cannot be a torn tail.

// walScan is what reading one write-ahead log found.
type walScan struct {
	num  wal.NumWAL
	path string
	fs   vfs.FS
	size int64
	// end is the offset where the readable records end (the whole file when clean).
	end int64
	// clean: the records read to the end of the file or to Pebble's end-of-log trailer.
	clean bool
	// err is why reading stopped early (nil when clean).
	err error
	// damaged: what follows end cannot be a torn tail (see confirmDamage), or a log Pebble
	// reads strictly (not the newest) does not end cleanly.
	damaged bool
	// syncedPast is, when damaged was proved by a later record, the offset that record says
	// was synced.
	syncedPast int64
	// lastMark is the offset just past the last sync mark (marks.go), or -1; markKind its kind.
	lastMark int64
	markKind byte
	// afterMark counts the records after lastMark; records counts every record but marks.
	afterMark, records int
}

// scanWALs reads every write-ahead log in dir, oldest first.
func scanWALs(fs vfs.FS, dir string) ([]*walScan, error) {
	logs, err := wal.Scan(wal.Dir{FS: fs, Dirname: dir})
	if err != nil {
		return nil, fmt.Errorf("list write-ahead logs: %w", err)
	}
	sort.Slice(logs, func(i, j int) bool { return logs[i].Num < logs[j].Num })
	out := make([]*walScan, 0, len(logs))
	for i, ll := range logs {
		w, err := scanWAL(ll, i == len(logs)-1)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

func scanWAL(ll wal.LogicalLog, newest bool) (*walScan, error) {
	fs, path := ll.SegmentLocation(ll.NumSegments() - 1)
	w := &walScan{num: ll.Num, path: path, fs: fs, lastMark: -1}
	data, err := readAll(fs, path)
	if err != nil {
		return nil, err
	}
	w.size = int64(len(data))
	// Pebble's record reader, on the file alone: wal.Reader would hide the marks (it skips
	// records that hold only LogData).
	r := newRecordReader(bytes.NewReader(data), ll.Num)
	var buf bytes.Buffer
	markPending := false
	for {
		// The offset is where the next record starts, or where the readable records end.
		off := r.Offset()
		if markPending {
			w.lastMark, markPending = off, false
		}
		w.end = off
		rec, err := r.Next()
		if err == nil {
			buf.Reset()
			_, err = io.Copy(&buf, rec)
		}
		if errors.Is(err, io.EOF) {
			w.clean = true
			break
		}
		if err != nil {
			if !record.IsInvalidRecord(err) {
				return nil, fmt.Errorf("write-ahead log %s: read at offset %d: %w", path, off, err)
			}
			w.err = err
			break
		}
		if k := markOf(buf.Bytes()); k != 0 {
			w.markKind, w.afterMark, markPending = k, 0, true
			continue
		}
		if len(buf.Bytes()) >= 12 && binary.LittleEndian.Uint32(buf.Bytes()[8:12]) == 0 {
			continue // another LogData record: nothing to replay
		}
		w.afterMark++
		w.records++
	}
	if w.clean {
		return w, nil
	}
	// A log that is not the newest was closed (and synced) when Pebble moved to the next one,
	// so it must end cleanly; in the newest, only a later record proves damage.
	if !newest || !errors.Is(w.err, record.ErrUnexpectedEOF) {
		w.damaged = true
	}
	if !w.damaged {
		if s, ok := confirmDamage(data, uint32(ll.Num), w.end); ok {
			w.damaged, w.syncedPast = true, s
		}
	}
	return w, nil
}

// newRecordReader is record.NewReader, whose log number parameter has a type of Pebble's
// internal package (base.DiskFileNum) that wal.NumWAL converts to but that cannot be named here.
func newRecordReader(r io.Reader, num wal.NumWAL) *record.Reader {
	fn := reflect.ValueOf(record.NewReader)
	arg := reflect.ValueOf(uint64(num)).Convert(fn.Type().In(1))
	return fn.Call([]reflect.Value{reflect.ValueOf(r), arg})[0].Interface().(*record.Reader)
}

func readAll(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("write-ahead log %s: %w", path, err)
	}
	return b, nil
}

// The WAL chunk format (Pebble's record package, FormatWALSyncChunks): a 19-byte header of
// checksum (4, masked CRC-32C of everything after the length), payload length (2), encoding (1),
// log number (4) and the offset synced when the chunk was written (8), then the payload. Chunks
// never cross a 32 KiB block.
const (
	walBlockSize       = 32 << 10
	walSyncHeaderSize  = 19
	walSyncFirstEncode = 9 // walSyncFullChunkEncoding .. walSyncLastChunkEncoding = 9..12
	walSyncLastEncode  = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// confirmDamage looks past from for an intact chunk of log logNum that says the log was synced
// beyond from. Such a chunk was written after the bytes at from were on disk, so what stands there
// now is damage, not a write cut short. Unlike Pebble's own look-ahead it also searches the rest
// of the block where reading stopped, at every byte, since damage there hides where chunks begin.
func confirmDamage(data []byte, logNum uint32, from int64) (syncedPast int64, ok bool) {
	if from < 0 {
		from = 0
	}
	for i := from + 1; i+walSyncHeaderSize <= int64(len(data)); i++ {
		enc := data[i+6]
		if enc < walSyncFirstEncode || enc > walSyncLastEncode {
			continue
		}
		blockEnd := (i/walBlockSize + 1) * walBlockSize
		n := int64(binary.LittleEndian.Uint16(data[i+4 : i+6]))
		end := i + walSyncHeaderSize + n
		if end > blockEnd || end > int64(len(data)) {
			continue
		}
		if binary.LittleEndian.Uint32(data[i+7:i+11]) != logNum {
			continue
		}
		if binary.LittleEndian.Uint32(data[i:i+4]) != maskedCRC(data[i+6:end]) {
			continue
		}
		if s := int64(binary.LittleEndian.Uint64(data[i+11 : i+19])); s > from {
			return s, true
		}
	}
	return 0, false
}
