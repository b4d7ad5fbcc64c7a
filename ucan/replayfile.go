package ucan

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/macula-io/macula/frame"
)

// The replay file: frames of package frame, each payload ending with the
// CRC-32C of what precedes it in the payload.
//
//	header  type 1, version 1: "macula-replay", boot ID (1-byte length, at
//	        most 64 bytes), quarantine floor and end (int64 Unix ns, BE), CRC
//	entry   type 2, version 1: kept until (int64 Unix ns, BE; 0: for ever),
//	        content ID (32 bytes), CRC
//	clean   type 3, version 1: closed at (int64 Unix ns, BE), CRC; the last
//	        frame of a file written by Close
const (
	replayHeader  = 1
	replayEntry   = 2
	replayClean   = 3
	replayVersion = 1
	replayMagic   = "macula-replay"
	maxBootID     = 64
	entryPayload  = 8 + 32 + 4
	entryFrame    = frame.HeaderLen + entryPayload
	cleanPayload  = 8 + 4
	maxReplayItem = 256 // the largest payload read: a header
	// compactSlack is how many stale entry frames the file may hold
	// beyond twice the live ones before it is rewritten.
	compactSlack = 1024
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// replayFile keeps a replayCache on disk. Its methods run under the
// cache's mu.
//
// Only a write that returned may have let an invocation through, and a
// process that dies keeps its returned writes (they are in the kernel's
// page cache), so appends need no fsync. What a crash of the machine can
// lose is found out at the next start instead: a file not marked clean by
// Close, written in another boot of the system, is not trusted (the cache
// is quarantined). The first write of a run and the last (Close) are made
// durable, so that the file on disk always says which run it belongs to.
type replayFile struct {
	path string
	boot string       // the system's boot ID; "" where unknown
	log  *slog.Logger // set in openReplayFile, read-only after
	f    *os.File     // written in this run; nil until the first write
	// unclean: the file on disk is not marked clean (nor written in this
	// run yet), so Close must write it even if nothing was used.
	unclean bool
	size    int64 // bytes of whole frames in f
	records int   // entry frames in f
}

// loadedReplay is what a replay file said at start.
type loadedReplay struct {
	entries        []expiry // live entries
	qFloor, qUntil int64    // a quarantine in force, from the header
	// suspect says why the file may miss invocations accepted before
	// ("" when it cannot).
	suspect string
	// clean: the file exists and was marked clean by Close (or does not
	// exist at all).
	clean bool
}

// openReplayFile reads the replay file at path (if any) into r, and
// quarantines r when the file cannot vouch for every invocation accepted
// before: floor and until bound the quarantine (see Validator docs). It
// writes nothing: the file is rewritten on the first write.
func openReplayFile(r *replayCache, path string, now time.Time, leeway, ttl time.Duration, log *slog.Logger) error {
	rf := &replayFile{path: path, boot: systemBootID(), log: log}
	st, err := readReplayFile(path, rf.boot, now.UnixNano(), r.max)
	if err != nil {
		return err
	}
	for _, e := range st.entries {
		if _, ok := r.seen[e.id]; !ok {
			r.seen[e.id] = e.until
			r.queue = append(r.queue, e)
		}
	}
	heap.Init(&r.queue)
	if st.qUntil != 0 && now.UnixNano() <= st.qUntil {
		r.quarantineLocked(st.qFloor, st.qUntil)
	}
	if st.suspect != "" {
		// Whatever was accepted before this start was issued before it
		// (an invocation issued more than the leeway ahead of the clock is
		// refused) and expires within the TTL.
		floor := now.Add(leeway).UnixNano()
		until := int64(forever)
		if ttl > 0 {
			until = now.Add(ttl + 2*leeway).UnixNano()
		}
		r.quarantineLocked(floor, until)
		log.Warn("ucan: the record of used invocations may be incomplete: refusing older invocations for a while",
			"file", path, "reason", st.suspect, "issued_before", time.Unix(0, r.qFloor).UTC(), "until", quarantineEnd(r.qUntil))
	} else if r.quarantinedLocked(now.UnixNano()) {
		log.Info("ucan: still refusing invocations issued before an incomplete record", "file", path,
			"issued_before", time.Unix(0, r.qFloor).UTC(), "until", quarantineEnd(r.qUntil))
	}
	rf.unclean = !st.clean
	r.file = rf
	return nil
}

// readReplayFile parses the file; only a failure to read it is an error.
func readReplayFile(path, boot string, now int64, maxEntries int) (loadedReplay, error) {
	var st loadedReplay
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		st.clean = true // a first start: nothing to write at Close
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("%w: replay file: %v", ErrConfig, err)
	}
	defer f.Close()
	// The file holds at most about twice the live entries (compaction);
	// a bigger one is read as far as that and not trusted.
	limit := int64(2*maxEntries+compactSlack+2)*entryFrame + 2*maxReplayItem
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return st, fmt.Errorf("%w: replay file: %v", ErrConfig, err)
	}
	if int64(len(data)) > limit {
		data, st.suspect = data[:limit], fmt.Sprintf("over %d bytes", limit)
	}
	h, p, rest, err := frame.Decode(data, maxReplayItem)
	if err != nil || h.Type != replayHeader || h.Version != replayVersion {
		st.suspect = "no valid header (an empty or foreign file)"
		return st, nil
	}
	fileBoot, qFloor, qUntil, ok := parseReplayHeader(p)
	if !ok {
		st.suspect = "a damaged header"
		return st, nil
	}
	st.qFloor, st.qUntil = qFloor, qUntil
	clean := false
	for len(rest) > 0 && st.suspect == "" {
		h, p, rest, err = frame.Decode(rest, maxReplayItem)
		switch {
		case errors.Is(err, frame.ErrTruncated):
			// A write cut off by the process's end: it never returned, so
			// it let nothing through. The run was not clean (below).
			rest = nil
		case err != nil:
			st.suspect = "a damaged frame: " + err.Error()
		case clean:
			st.suspect = "frames after the clean-close mark"
		case h.Version != replayVersion:
			st.suspect = fmt.Sprintf("a frame of version %d", h.Version)
		case h.Type == replayEntry:
			until, id, ok := parseReplayEntry(p)
			switch {
			case !ok:
				st.suspect = "a damaged entry"
			case until != 0 && until < now:
				// expired: forgotten
			case len(st.entries) >= maxEntries:
				st.suspect = fmt.Sprintf("more than ReplayCacheSize (%d) live entries", maxEntries)
			default:
				st.entries = append(st.entries, expiry{id: id, until: until})
			}
		case h.Type == replayClean:
			if !checkCRC(p, cleanPayload) {
				st.suspect = "a damaged clean-close mark"
			}
			clean = true
		default:
			st.suspect = fmt.Sprintf("a frame of unknown type %d", h.Type)
		}
	}
	st.clean = clean && st.suspect == ""
	if st.suspect == "" && !clean {
		switch {
		case boot == "":
			st.suspect = "the node did not stop cleanly, and this system cannot tell whether it restarted since (writes may have been lost)"
		case fileBoot != boot:
			st.suspect = "the node did not stop cleanly, and the system restarted since (writes may have been lost)"
		}
	}
	return st, nil
}

func checkCRC(p []byte, size int) bool {
	return len(p) == size && crc32.Checksum(p[:size-4], castagnoli) == binary.BigEndian.Uint32(p[size-4:])
}

func parseReplayHeader(p []byte) (boot string, qFloor, qUntil int64, ok bool) {
	if len(p) < len(replayMagic)+1+16+4 || !bytes.HasPrefix(p, []byte(replayMagic)) {
		return "", 0, 0, false
	}
	b := p[len(replayMagic):]
	n := int(b[0])
	if n > maxBootID || len(b) != 1+n+16+4 || !checkCRC(p, len(p)) {
		return "", 0, 0, false
	}
	boot = string(b[1 : 1+n])
	b = b[1+n:]
	return boot, int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:])), true
}

func parseReplayEntry(p []byte) (until int64, id contentID, ok bool) {
	if !checkCRC(p, entryPayload) {
		return 0, id, false
	}
	copy(id[:], p[8:40])
	return int64(binary.BigEndian.Uint64(p)), id, true
}

func appendCRC(b []byte, from int) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[from:], castagnoli))
}

func appendReplayHeader(b []byte, boot string, qFloor, qUntil int64) []byte {
	start := len(b) + frame.HeaderLen
	b = frame.AppendHeader(b, replayHeader, replayVersion, len(replayMagic)+1+len(boot)+16+4)
	b = append(b, replayMagic...)
	b = append(b, byte(len(boot)))
	b = append(b, boot...)
	b = binary.BigEndian.AppendUint64(b, uint64(qFloor))
	b = binary.BigEndian.AppendUint64(b, uint64(qUntil))
	return appendCRC(b, start)
}

func appendReplayEntry(b []byte, id contentID, until int64) []byte {
	start := len(b) + frame.HeaderLen
	b = frame.AppendHeader(b, replayEntry, replayVersion, entryPayload)
	b = binary.BigEndian.AppendUint64(b, uint64(until))
	b = append(b, id[:]...)
	return appendCRC(b, start)
}

func appendReplayClean(b []byte, at int64) []byte {
	start := len(b) + frame.HeaderLen
	b = frame.AppendHeader(b, replayClean, replayVersion, cleanPayload)
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	return appendCRC(b, start)
}

// appendLocked records one entry; the first write of a run writes the whole
// file anew, durably, first.
func (rf *replayFile) appendLocked(r *replayCache, id contentID, until, now int64) error {
	if rf.f == nil {
		if err := rf.rewriteLocked(r, now, true, false); err != nil {
			return err
		}
	}
	var buf [entryFrame]byte
	b := appendReplayEntry(buf[:0], id, until)
	n, err := rf.f.Write(b)
	if err != nil {
		// Cut a partial frame off, so that later ones stay readable; if
		// that fails too, the next start finds a damaged file and
		// quarantines, which is safe.
		if n > 0 {
			_ = rf.f.Truncate(rf.size)
			_, _ = rf.f.Seek(rf.size, io.SeekStart)
		}
		return err
	}
	rf.size += int64(n)
	rf.records++
	return nil
}

// compactLocked rewrites the file with the live entries alone when it holds
// more than twice as many frames as live entries (plus a slack), so that
// its size stays within about twice ReplayCacheSize entries. A failure
// keeps the old file, which is still right.
func (rf *replayFile) compactLocked(r *replayCache, now int64) {
	if rf.records <= 2*len(r.seen)+compactSlack {
		return
	}
	if err := rf.rewriteLocked(r, now, false, false); err != nil {
		rf.log.Warn("ucan: cannot compact the replay file", "file", rf.path, "err", err)
	}
}

// closeLocked writes the file with its clean-close mark, durably.
func (rf *replayFile) closeLocked(r *replayCache, now int64) error {
	if rf.f == nil && !rf.unclean {
		return nil // the file is as Close left it last time, or absent
	}
	err := rf.rewriteLocked(r, now, true, true)
	if rf.f != nil {
		if cerr := rf.f.Close(); err == nil {
			err = cerr
		}
		rf.f = nil
	}
	if err != nil {
		return fmt.Errorf("ucan: replay file: %w", err)
	}
	return nil
}

// rewriteLocked writes the cache's live entries and quarantine to a new
// file and renames it over the old one. durable syncs the file and its
// directory; clean marks it as written by Close (and leaves it closed).
func (rf *replayFile) rewriteLocked(r *replayCache, now int64, durable, clean bool) error {
	live := r.liveLocked(now)
	b := make([]byte, 0, 2*maxReplayItem+len(live)*entryFrame)
	b = appendReplayHeader(b, rf.boot, r.qFloor, r.qUntil)
	for _, e := range live {
		b = appendReplayEntry(b, e.id, e.until)
	}
	if clean {
		b = appendReplayClean(b, now)
	}
	tmp := rf.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, rf.path); err != nil {
		return fail(err)
	}
	if durable {
		if err := syncDir(filepath.Dir(rf.path)); err != nil {
			rf.log.Warn("ucan: cannot sync the directory of the replay file", "file", rf.path, "err", err)
		}
	}
	if rf.f != nil {
		rf.f.Close()
	}
	rf.unclean = false
	if clean {
		rf.f = nil
		return f.Close()
	}
	rf.f, rf.size, rf.records = f, int64(len(b)), len(live)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// systemBootID is bootID; tests replace it to play a restart of the system.
var systemBootID = bootID

// bootID identifies the running boot of the system (Linux); "" elsewhere,
// where an unclean stop is then never trusted.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	id := strings.TrimSpace(string(b))
	if len(id) > maxBootID {
		id = id[:maxBootID]
	}
	return id
}
