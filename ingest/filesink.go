package ingest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Defaults for the zero fields of FileSinkConfig.
const (
	DefaultSegmentBytes = 64 << 20
	DefaultRetainBytes  = 1 << 30
	DefaultSyncBytes    = 1 << 20
	DefaultSyncInterval = 2 * time.Millisecond
)

// FileSinkConfig configures OpenFileSink. Only Dir is required; every zero
// field takes the documented default. The fields are read once, at open.
type FileSinkConfig struct {
	// Dir is the log directory. It is created if missing, and holds one
	// writer at a time: a lock file (LOCK) keeps a second FileSink out.
	Dir string

	// SegmentBytes is the size at which the active segment is closed and a
	// new one started (default 64 MiB). A record larger than that gets a
	// segment of its own.
	SegmentBytes int64

	// RetainBytes bounds the total size of all segments (default 1 GiB).
	// When a rotation takes the total over it, the oldest segments are
	// deleted; the active segment never is, so the log may hold up to one
	// segment more than the bound if RetainBytes < SegmentBytes.
	RetainBytes int64

	// SyncBytes and SyncInterval decide when a group commit happens: an
	// fsync is issued once SyncBytes bytes (default 1 MiB) are waiting, or
	// SyncInterval (default 2 ms) after the first of them arrived,
	// whichever comes first. They trade Write latency for fewer fsyncs.
	SyncBytes    int
	SyncInterval time.Duration

	// Logger receives what recovery did at open, retention deletions, and
	// when the sink stops and starts again being able to store (nil means
	// slog.Default()).
	Logger *slog.Logger

	// OnSync, if set, is called after every fsync of records with how long
	// the fsync took and how many record bytes it made durable; a metrics
	// layer records fsync latency through it. It is called from the sink's
	// syncer goroutine before the Writes it covers return, so it must not
	// block and must not call the sink.
	OnSync func(d time.Duration, bytes int)
}

// FileSink is the embedded default Sink: an append-only log of segment
// files in one directory, one CRC-32C per record (format in
// docs/protocol.md, "On-disk log format").
//
// Writes from several goroutines are appended to a shared buffer and made
// durable together by one syncer goroutine (group commit): it writes the
// buffer to the active segment and fsyncs, and only then are the Writes
// whose records that fsync covers released. A Write never returns success
// before the fsync that covers its records.
//
// Memory is bounded by the callers: every Write blocks until its records
// are durable, so the buffer holds at most one batch per concurrent Write
// (plus what is being written out).
//
// A failed write, fsync or rotation fails every Write waiting at that
// moment, and nothing of theirs stays in the log: the sink cuts the log
// back to where it was before their records (truncating the segment to its
// last fsynced size and removing a segment the failed rotation created)
// before those Writes return. The sink then retries by itself, after a
// backoff of 5 ms doubling up to 250 ms: later Writes are written as usual
// once it has passed (or fail the same way), and while no Write comes a
// probe checks whether a file can be created and written in the directory
// again. Health reports the cause meanwhile.
//
// All methods are safe for concurrent use.
type FileSink struct {
	dir          string
	log          *slog.Logger
	segmentBytes int64
	retainBytes  int64
	syncBytes    int
	syncInterval time.Duration
	onSync       func(time.Duration, int)
	fsync        func(*os.File) error // (*os.File).Sync; tests inject failures
	lock         *os.File             // holds the directory lock; nil where unsupported

	// wake carries one pending nudge to the syncer: data arrived in an
	// empty buffer, the buffer passed SyncBytes, or Close began.
	wake chan struct{}
	// done is closed when the syncer goroutine has exited.
	done chan struct{}

	closeOnce sync.Once
	closeErr  error

	// mu guards the fields below it; cond (on mu) wakes Writes after each
	// group commit.
	mu   sync.Mutex
	cond sync.Cond
	// pend holds encoded records not yet handed to the syncer; breaks are
	// the offsets in pend where a new segment must start. spare and
	// spareBreaks are the other half of the double buffer.
	pend, spare         []byte
	breaks, spareBreaks []int
	// segFill is the size the newest segment will have once pend is
	// written; Write uses it to place breaks at record boundaries.
	segFill int64
	// appended and synced count record bytes since open: a Write whose
	// records end at appended == e is durable once synced >= e.
	appended, synced uint64
	firstAt          time.Time // when pend last became non-empty
	closed           bool
	// pendWrites counts the Writes with records in pend.
	pendWrites int
	// A failed flush fails every Write waiting at that moment: those whose
	// records end at or before failEnd and are not synced. They return
	// failErr; the syncer writes nothing more until all failWaiters of them
	// have returned, so a later fsync cannot be taken for theirs.
	failEnd     uint64
	failWaiters int
	failErr     error
	// health is why the sink cannot store now (nil when it can); it is set
	// by a failed flush or probe and cleared by a successful one.
	health         error
	unhealthySince time.Time
	backoff        time.Duration
	retryAt        time.Time // no retry before this while health != nil

	// Owned by the syncer goroutine (and by Open and Close, which run
	// when it does not).
	active *os.File      // the newest segment; nil while a repair waits to reopen it
	segs   []segmentInfo // every segment, oldest first; the last is active
	total  int64         // sum of segs sizes
	// repair is set while the log may still hold records of a failed
	// flush: it must be cut back to repairTo before anything is written.
	// repairDir: a segment was removed and the directory not yet fsynced.
	repair, repairDir bool
	repairTo          segMark

	// recovered is what openLog read of the producer sessions; it does not
	// change afterwards.
	recovered []RecoveredSession
}

// segMark is a point in the log to cut back to: the number of segments
// and the size of the last of them.
type segMark struct {
	n    int
	size int64
}

// Retry backoff while the sink cannot store.
const (
	minRetryBackoff = 5 * time.Millisecond
	maxRetryBackoff = 250 * time.Millisecond
)

var _ SessionRecoverer = (*FileSink)(nil)

// OpenFileSink opens (creating if needed) the log in cfg.Dir and starts its
// syncer goroutine. If the last segment ends in a torn tail, as a crash
// leaves it, recovery truncates it to the last complete record and logs
// what it dropped. If intact records follow the damage, they were never
// acknowledged by a returned Write unless the disk lost acknowledged data,
// so recovery keeps the dropped bytes in a file next to the segment (never
// read as part of the log) and logs an error. A damaged header of the last
// segment is not repaired: OpenFileSink returns a *CorruptError.
//
// OpenFileSink also reads every segment once to rebuild the producer
// sessions (RecoveredSessions); damage in an earlier segment is logged as
// an error and ends the reading of that segment only. If the last segment
// is of format version 1, it is kept as it is and the first records
// written go into a new segment.
func OpenFileSink(cfg FileSinkConfig) (*FileSink, error) {
	return openFileSink(cfg, (*os.File).Sync)
}

func openFileSink(cfg FileSinkConfig, fsync func(*os.File) error) (*FileSink, error) {
	s, err := newFileSink(cfg, fsync)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("ingest: open file sink: %w", err)
	}
	if s.lock, err = lockDir(s.dir); err != nil {
		return nil, err
	}
	if err := s.openLog(); err != nil {
		unlockDir(s.lock)
		return nil, err
	}
	go s.run()
	return s, nil
}

// newFileSink checks cfg and fills in defaults.
func newFileSink(cfg FileSinkConfig, fsync func(*os.File) error) (*FileSink, error) {
	if cfg.Dir == "" {
		return nil, errors.New("ingest: open file sink: no directory given")
	}
	if cfg.SegmentBytes < 0 || cfg.RetainBytes < 0 || cfg.SyncBytes < 0 || cfg.SyncInterval < 0 {
		return nil, fmt.Errorf("ingest: open file sink: negative size or interval in %+v", cfg)
	}
	s := &FileSink{
		dir:          cfg.Dir,
		log:          cfg.Logger,
		segmentBytes: cmpOr(cfg.SegmentBytes, DefaultSegmentBytes),
		retainBytes:  cmpOr(cfg.RetainBytes, DefaultRetainBytes),
		syncBytes:    cmpOr(cfg.SyncBytes, DefaultSyncBytes),
		syncInterval: cmpOr(cfg.SyncInterval, DefaultSyncInterval),
		onSync:       cfg.OnSync,
		fsync:        fsync,
		wake:         make(chan struct{}, 1),
		done:         make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("dir", cfg.Dir)
	s.cond.L = &s.mu
	return s, nil
}

// cmpOr returns v, or def if v is zero.
func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// openLog finds the segments, rebuilds the sessions from all of them,
// recovers the last one and opens it for appending, or creates the first
// segment of an empty log.
func (s *FileSink) openLog() error {
	segs, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return s.createSegment(1)
	}
	start := time.Now()
	if len(segs) > 1 && segs[len(segs)-1].size < segHeaderSize {
		// A rotation failed (or a crash came) before the new segment's
		// header was durable: it holds no record. Removing it, rather than
		// writing a header, also works on a disk that is still full.
		torn := segs[len(segs)-1]
		if err := os.Remove(torn.path); err != nil {
			return fmt.Errorf("ingest: recover log: %w", err)
		}
		if err := syncDir(s.dir); err != nil {
			return err
		}
		s.log.Warn("ingest: removed log segment with a torn header", "segment", torn.path, "size", torn.size)
		segs = segs[:len(segs)-1]
	}
	var sessions sessionScan
	var scanned int64
	for _, seg := range segs[:len(segs)-1] {
		scanned += s.scanSegmentSessions(seg.path, &sessions)
	}
	last := &segs[len(segs)-1]
	if last.size, last.version, err = s.recoverSegment(last.path, &sessions); err != nil {
		return err
	}
	scanned += last.size
	s.recovered = sessions.result()
	s.log.Info("ingest: rebuilt producer sessions from the log", "sessions", len(s.recovered),
		"segments", len(segs), "bytes", scanned, "took", time.Since(start))
	f, err := os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("ingest: open file sink: %w", err)
	}
	s.active = f
	s.segs = segs
	for _, seg := range segs {
		s.total += seg.size
	}
	if last.version != segVersion {
		s.log.Info("ingest: last log segment is of an older format version; new records go into a new segment",
			"segment", last.path, "version", last.version)
	}
	s.segFill = s.activeFill()
	s.applyRetention()
	return nil
}

// activeFill is the size the active segment has for placing records: its
// size, or that of the new segment the next write will start if the active
// one is of an older version. Only the syncer goroutine (and openLog,
// before it runs) may call it.
func (s *FileSink) activeFill() int64 {
	last := s.segs[len(s.segs)-1]
	if last.version != segVersion {
		return segHeaderSize
	}
	return last.size
}

// sessionScan gathers, while segments are read at open, the highest seq
// and the newest timestamp of every non-zero session.
type sessionScan struct {
	byID map[SessionID]int // index in list
	list []scannedSession
	// The session of the previous record, which the next one usually
	// shares: it saves a map lookup per record.
	prevID SessionID
	prev   int
}

type scannedSession struct {
	id  SessionID
	seq uint64
	ts  int64
}

// add notes an intact record of session id (a zero id is ignored).
func (a *sessionScan) add(id SessionID, seq uint64, ts int64) {
	if id.IsZero() {
		return
	}
	i := a.prev
	if id != a.prevID || a.list == nil {
		var ok bool
		if i, ok = a.byID[id]; !ok {
			if a.byID == nil {
				a.byID = make(map[SessionID]int)
			}
			i = len(a.list)
			a.byID[id] = i
			a.list = append(a.list, scannedSession{id: id, seq: seq, ts: ts})
		}
		a.prevID, a.prev = id, i
	}
	e := &a.list[i]
	e.seq = max(e.seq, seq)
	e.ts = max(e.ts, ts)
}

// result returns the sessions in the order they first appeared.
func (a *sessionScan) result() []RecoveredSession {
	if len(a.list) == 0 {
		return nil
	}
	out := make([]RecoveredSession, len(a.list))
	for i, e := range a.list {
		out[i] = RecoveredSession{ID: e.id, Seq: e.seq, Last: time.Unix(0, e.ts)}
	}
	return out
}

// scanSegmentSessions adds the sessions of the intact records of a segment
// that is not the last to a and returns the number of bytes it read. Damage
// (which neither a crash nor a failed write leaves outside the last
// segment) or a read error is logged as an error and ends the segment: no
// record at or after it counts, so no seq comes from a damaged record, and
// the open goes on (a seq too low only lets a resent record be stored
// twice, where failing would keep the node from starting).
func (s *FileSink) scanSegmentSessions(path string, a *sessionScan) int64 {
	fail := func(off int64, reason string) {
		s.log.Error("ingest: log segment damaged or unreadable; producer sessions rebuilt from its records before that point only",
			"segment", path, "offset", off, "reason", reason)
	}
	f, err := os.Open(path)
	if err != nil {
		fail(0, err.Error())
		return 0
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		fail(0, err.Error())
		return 0
	}
	size := info.Size()
	if size < segHeaderSize {
		fail(0, "segment header is truncated")
		return size
	}
	var hdr [segHeaderSize]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		fail(0, err.Error())
		return 0
	}
	version, reason := checkSegmentHeader(hdr[:])
	if reason != "" {
		fail(0, reason)
		return segHeaderSize
	}
	sc := newRecordScanner(f, size, version)
	for {
		h, err := sc.nextHeader()
		if err == io.EOF {
			return size
		}
		if err != nil {
			var bad *badRecord
			if errors.As(err, &bad) {
				fail(bad.off, bad.reason)
			} else {
				fail(sc.off, err.Error())
			}
			return sc.off
		}
		a.add(h.session, h.seq, h.ts)
	}
}

// recoverSegment checks the newest segment at open, cuts a torn tail,
// adds the sessions of the records it keeps to a, and returns the
// segment's size afterwards and its version.
func (s *FileSink) recoverSegment(path string, a *sessionScan) (int64, uint32, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("ingest: recover log: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("ingest: recover log: %w", err)
	}
	size := info.Size()
	if size < segHeaderSize {
		// The crash came between creating the segment and making its
		// header durable; no record can be in it.
		if err := s.rewriteHeader(f); err != nil {
			return 0, 0, err
		}
		s.log.Warn("ingest: recovered log segment with a torn header", "segment", path, "size", size)
		return segHeaderSize, segVersion, nil
	}
	var hdr [segHeaderSize]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return 0, 0, fmt.Errorf("ingest: recover log: %w", err)
	}
	version, reason := checkSegmentHeader(hdr[:])
	if reason != "" {
		return 0, 0, &CorruptError{Segment: path, Offset: 0, Reason: reason}
	}
	sc := newRecordScanner(f, size, version)
	kept := 0
	for {
		h, err := sc.nextHeader()
		if err == io.EOF {
			return size, version, nil
		}
		var bad *badRecord
		if errors.As(err, &bad) {
			// Only the records before bad were added: they are the ones
			// the cut keeps.
			size, err := s.cutTail(f, size, sc.hs, kept, bad)
			return size, version, err
		}
		if err != nil {
			return 0, 0, err
		}
		a.add(h.session, h.seq, h.ts)
		kept++
	}
}

// cutTail truncates the segment f, whose records have hs-byte headers, at
// the bad record, first saving the dropped bytes if intact records are
// among them.
func (s *FileSink) cutTail(f *os.File, size int64, hs, kept int, bad *badRecord) (int64, error) {
	path := f.Name()
	at, found, err := findIntactRecord(f, bad.off+1, size, hs)
	if err != nil {
		return 0, err
	}
	if found {
		saved := path + ".dropped-" + strconv.FormatInt(bad.off, 10)
		if err := saveRange(f, bad.off, size, saved); err != nil {
			return 0, err
		}
		s.log.Error("ingest: log segment damaged before intact records; truncated it and saved the dropped bytes",
			"segment", path, "offset", bad.off, "reason", bad.reason, "next_intact", at,
			"dropped_bytes", size-bad.off, "kept_records", kept, "saved_to", saved)
	} else {
		s.log.Warn("ingest: recovered torn tail of log segment",
			"segment", path, "offset", bad.off, "reason", bad.reason,
			"dropped_bytes", size-bad.off, "kept_records", kept)
	}
	if err := f.Truncate(bad.off); err != nil {
		return 0, fmt.Errorf("ingest: recover log: %w", err)
	}
	if err := s.fsync(f); err != nil {
		return 0, fmt.Errorf("ingest: recover log: %w", err)
	}
	return bad.off, nil
}

// saveRange copies bytes [from, to) of f into a new file and fsyncs it.
func saveRange(f *os.File, from, to int64, path string) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("ingest: recover log: %w", err)
	}
	_, err = io.Copy(out, io.NewSectionReader(f, from, to-from))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ingest: recover log: save dropped bytes: %w", err)
	}
	return nil
}

// rewriteHeader replaces the contents of f with a fresh segment header.
func (s *FileSink) rewriteHeader(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("ingest: recover log: %w", err)
	}
	if _, err := f.WriteAt(appendSegmentHeader(nil), 0); err != nil {
		return fmt.Errorf("ingest: recover log: %w", err)
	}
	if err := s.fsync(f); err != nil {
		return fmt.Errorf("ingest: recover log: %w", err)
	}
	return nil
}

// createSegment creates segment index, makes its header and directory
// entry durable, and makes it the active segment. The previous active
// segment, if any, must already be fsynced: this is what confines a torn
// tail to the last segment.
//
// If any step fails, the new file is removed again, so a failed rotation
// leaves no empty or headerless segment behind. The file is opened with
// O_TRUNC rather than O_EXCL: a file of that name can only be such a
// leftover whose removal failed (the directory lock keeps other writers
// out), and it must not block every later rotation.
func (s *FileSink) createSegment(index uint64) error {
	path := filepath.Join(s.dir, segmentName(index))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("ingest: create log segment: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		if rerr := os.Remove(path); rerr != nil {
			s.log.Warn("ingest: could not remove the segment of a failed rotation", "segment", path, "err", rerr)
		}
		return err
	}
	if _, err := f.Write(appendSegmentHeader(nil)); err != nil {
		return fail(fmt.Errorf("ingest: create log segment: %w", err))
	}
	if err := s.fsync(f); err != nil {
		return fail(fmt.Errorf("ingest: create log segment: %w", err))
	}
	if err := syncDir(s.dir); err != nil {
		return fail(err)
	}
	if s.active != nil {
		if err := s.active.Close(); err != nil {
			s.log.Warn("ingest: closing full log segment", "segment", s.active.Name(), "err", err)
		}
	}
	s.active = f
	s.segs = append(s.segs, segmentInfo{index: index, path: path, size: segHeaderSize, version: segVersion})
	s.total += segHeaderSize
	return nil
}

// syncDir fsyncs a directory so that entries created in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("ingest: sync log directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ingest: sync log directory: %w", err)
	}
	return nil
}

// applyRetention deletes the oldest segments while the log is larger than
// RetainBytes, never the active one. A deletion that fails is logged and
// retried at the next rotation: keeping data too long is not worth failing
// Writes over.
func (s *FileSink) applyRetention() {
	for s.total > s.retainBytes && len(s.segs) > 1 {
		old := s.segs[0]
		if err := os.Remove(old.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("ingest: retention could not delete log segment", "segment", old.path, "err", err)
			return
		}
		s.log.Debug("ingest: retention deleted log segment", "segment", old.path, "bytes", old.size)
		s.segs = s.segs[1:]
		s.total -= old.size
	}
}

// Write appends the batch to the log and returns once an fsync has made
// every record of it durable, or returns the error that prevented that; in
// that case none of the batch is left in the log. While the sink cannot
// store (see Health), a Write waits for the next retry, at most 250 ms.
// All records of one Write get the same timestamp and land contiguously,
// in batch order. It keeps no reference to the batch, and allocates
// nothing in the steady state.
//
// Write after Close returns ErrSinkClosed. A payload longer than
// 4 GiB - 1 fails the whole batch with an error matching ErrTooLarge.
func (s *FileSink) Write(batch []Record) error {
	for i := range batch {
		if uint64(len(batch[i].Payload)) > maxRecordPayload {
			return fmt.Errorf("ingest: record of %d bytes exceeds the log's 4 GiB limit: %w", len(batch[i].Payload), ErrTooLarge)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrSinkClosed
	}
	if len(batch) == 0 {
		s.mu.Unlock()
		return nil
	}
	// Stamped under the lock, so timestamps never go backwards in the log.
	now := time.Now()
	ts := now.UnixNano()
	wasEmpty := len(s.pend) == 0
	start := len(s.pend)
	for i := range batch {
		size := int64(recordSize(len(batch[i].Payload)))
		if s.segFill > segHeaderSize && s.segFill+size > s.segmentBytes {
			s.breaks = append(s.breaks, len(s.pend))
			s.segFill = segHeaderSize
		}
		s.pend = appendRecord(s.pend, &batch[i], ts)
		s.segFill += size
	}
	s.appended += uint64(len(s.pend) - start)
	s.pendWrites++
	end := s.appended
	if wasEmpty {
		s.firstAt = now
	}
	if wasEmpty || len(s.pend) >= s.syncBytes && start < s.syncBytes {
		s.nudge()
	}
	for s.synced < end && (s.failWaiters == 0 || end > s.failEnd) {
		s.cond.Wait()
	}
	var err error
	if s.synced < end {
		err = s.failErr
		if s.failWaiters--; s.failWaiters == 0 {
			s.cond.Broadcast() // the syncer may go on
		}
	}
	s.mu.Unlock()
	return err
}

// RecoveredSessions returns, for every producer session with a record in
// the log when the sink was opened, the highest seq stored for it and the
// time its newest record was stored, in no particular order. Only records
// with a valid CRC count, and none in a torn tail that recovery cut or
// after damage in an earlier segment. Sessions whose records retention had
// deleted are not known. The result is computed once, by OpenFileSink;
// each call returns a new slice.
func (s *FileSink) RecoveredSessions() []RecoveredSession {
	return slices.Clone(s.recovered)
}

// Health returns nil while the sink can store records, and otherwise the
// error that keeps it from storing (a full disk, no file descriptors, an
// I/O error). Meanwhile Writes fail with that error and store nothing; the
// sink keeps retrying on its own and Health returns nil again as soon as a
// write or a probe succeeds.
func (s *FileSink) Health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health
}

// nudge wakes the syncer without blocking; one pending nudge is enough.
func (s *FileSink) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the syncer goroutine: it waits for the SyncBytes or SyncInterval
// trigger, then writes out and fsyncs everything pending. While the sink
// cannot store it waits for the backoff instead, then retries with what is
// pending, or with a probe if nothing is. On Close it flushes what is left
// (at once, even during a backoff) and exits.
func (s *FileSink) run() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		s.mu.Lock()
		for s.failWaiters > 0 {
			s.cond.Wait() // the Writes a failure failed return first
		}
		n, closed, first := len(s.pend), s.closed, s.firstAt
		healthy, retryAt := s.health == nil, s.retryAt
		s.mu.Unlock()
		if !healthy {
			if wait := time.Until(retryAt); wait > 0 && !closed {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-s.wake:
					timer.Stop()
					continue // re-check: Close
				}
			}
			if n > 0 {
				s.flush()
				continue
			}
			s.probe()
			if closed {
				return
			}
			continue
		}
		if n == 0 {
			if closed {
				return
			}
			<-s.wake
			continue
		}
		if n < s.syncBytes && !closed {
			if wait := s.syncInterval - time.Since(first); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-s.wake:
					timer.Stop()
					continue // re-check: more data or Close
				}
			}
		}
		s.flush()
	}
}

// flush takes everything pending, writes and fsyncs it, and releases the
// Writes it covers. If that fails, it cuts the log back to where it was
// before (so none of their records stays in it) and fails every Write
// waiting: those it took, and those that arrived meanwhile, whose segment
// breaks were placed assuming the first would be stored.
func (s *FileSink) flush() {
	s.mu.Lock()
	buf, breaks := s.pend, s.breaks
	s.pend, s.breaks = s.spare[:0], s.spareBreaks[:0]
	end := s.appended
	writes := s.pendWrites
	s.pendWrites = 0
	s.mu.Unlock()

	err := s.repairLog()
	if err == nil {
		mark := segMark{n: len(s.segs), size: s.segs[len(s.segs)-1].size}
		if err = s.writeOut(buf, breaks); err != nil {
			s.rollback(mark)
		} else {
			s.applyRetention()
		}
	}

	// Keep the buffer for reuse unless a burst made it much larger than
	// a commit usually is.
	if cap(buf) > 4*s.syncBytes {
		buf = nil
	}
	s.mu.Lock()
	s.spare, s.spareBreaks = buf[:0], breaks[:0]
	if err != nil {
		s.setUnhealthyLocked(err)
		s.failErr = s.health
		s.failEnd = s.appended
		s.failWaiters = writes + s.pendWrites
		s.pendWrites = 0
		s.pend, s.breaks = s.pend[:0], s.breaks[:0]
		s.segFill = s.activeFill()
	} else {
		s.synced = end
		s.setHealthyLocked()
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

// probe checks, while the sink cannot store and no Write is waiting,
// whether it could again: it finishes a pending repair, then creates,
// writes and removes a small file in the log directory (which readers
// ignore), so a freed disk or returned descriptors are noticed without
// waiting for traffic that a failing /healthz keeps away.
func (s *FileSink) probe() {
	err := s.repairLog()
	if err == nil {
		err = probeDir(s.dir)
	}
	s.mu.Lock()
	if err != nil {
		s.setUnhealthyLocked(err)
	} else {
		s.setHealthyLocked()
	}
	s.mu.Unlock()
}

// probeFile is the name of the file probe writes; readers ignore it.
const probeFile = "PROBE"

func probeDir(dir string) error {
	path := filepath.Join(dir, probeFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("ingest: probe log directory: %w", err)
	}
	var block [4096]byte
	_, err = f.Write(block[:])
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(path); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("ingest: probe log directory: %w", err)
	}
	return nil
}

// setUnhealthyLocked records why the sink cannot store and schedules the
// next retry (caller holds mu).
func (s *FileSink) setUnhealthyLocked(err error) {
	now := time.Now()
	if s.health == nil {
		s.unhealthySince = now
		s.log.Error("ingest: file sink cannot store; failing writes and retrying", "err", err)
	} else {
		s.log.Debug("ingest: file sink retry failed", "err", err)
	}
	s.health = fmt.Errorf("ingest: file sink cannot store: %w", err)
	s.backoff = min(max(2*s.backoff, minRetryBackoff), maxRetryBackoff)
	s.retryAt = now.Add(s.backoff)
}

// setHealthyLocked clears a failure after a successful flush or probe
// (caller holds mu).
func (s *FileSink) setHealthyLocked() {
	if s.health != nil {
		s.log.Info("ingest: file sink can store again", "unavailable_for", time.Since(s.unhealthySince))
	}
	s.health = nil
	s.backoff = 0
}

// rollback cuts the log back to mark m after a failed flush. What it cannot
// do now (a descriptor to reopen the segment, an fsync) is retried by
// repairLog before anything else is written.
func (s *FileSink) rollback(m segMark) {
	s.repair, s.repairTo = true, m
	if err := s.repairLog(); err != nil {
		s.log.Warn("ingest: could not yet cut the records of a failed write off the log; retrying before the next write", "err", err)
	}
}

// repairLog finishes a pending rollback: it removes the segments created
// after the mark, reopens the mark's segment if its file was closed,
// truncates it to the mark's size and fsyncs it. Nothing is written to the
// log while it fails.
func (s *FileSink) repairLog() error {
	if !s.repair {
		return nil
	}
	m := s.repairTo
	for len(s.segs) > m.n {
		last := s.segs[len(s.segs)-1]
		if s.active != nil {
			// The active segment is the newest one, about to go.
			_ = s.active.Close()
			s.active = nil
		}
		if err := os.Remove(last.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ingest: remove log segment of a failed write: %w", err)
		}
		s.segs = s.segs[:len(s.segs)-1]
		s.total -= last.size
		s.repairDir = true
	}
	cur := &s.segs[m.n-1]
	if s.active == nil {
		f, err := os.OpenFile(cur.path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("ingest: reopen log segment: %w", err)
		}
		s.active = f
	}
	if err := s.active.Truncate(m.size); err != nil {
		return fmt.Errorf("ingest: truncate log segment: %w", err)
	}
	if err := s.fsync(s.active); err != nil {
		return fmt.Errorf("ingest: truncate log segment: %w", err)
	}
	s.total -= cur.size - m.size
	cur.size = m.size
	if s.repairDir {
		if err := syncDir(s.dir); err != nil {
			return err
		}
		s.repairDir = false
	}
	s.repair = false
	return nil
}

// writeOut writes buf to the log, starting a new segment at each break,
// and fsyncs each segment it wrote to before going on. If the active
// segment is of an older format version (the log was opened on it), it
// first starts a new segment: records are never appended to it.
func (s *FileSink) writeOut(buf []byte, breaks []int) error {
	if s.segs[len(s.segs)-1].version != segVersion && len(buf) > 0 {
		// Whatever the previous process left in it unsynced must be
		// durable before a newer segment is: that keeps torn tails in the
		// last segment.
		if err := s.fsync(s.active); err != nil {
			return err
		}
		if err := s.createSegment(s.segs[len(s.segs)-1].index + 1); err != nil {
			return err
		}
	}
	pos := 0
	for _, b := range breaks {
		if err := s.writeSync(buf[pos:b]); err != nil {
			return err
		}
		if err := s.createSegment(s.segs[len(s.segs)-1].index + 1); err != nil {
			return err
		}
		pos = b
	}
	return s.writeSync(buf[pos:])
}

// writeSync appends p to the active segment and fsyncs it.
func (s *FileSink) writeSync(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := s.active.Write(p); err != nil {
		return err
	}
	s.segs[len(s.segs)-1].size += int64(len(p))
	s.total += int64(len(p))
	start := time.Now()
	if err := s.fsync(s.active); err != nil {
		return err
	}
	if s.onSync != nil {
		s.onSync(time.Since(start), len(p))
	}
	return nil
}

// Close stops accepting Writes, waits until every record already written
// is fsynced (the Writes covering them return), and closes the files. If
// the sink cannot store at that point, it retries once at once, without
// waiting for the backoff; if that fails too (the last Writes then failed
// and left nothing in the log), Close returns the cause (as Health would).
// Otherwise it returns the error of closing, if any. Close is idempotent:
// later calls return nil.
func (s *FileSink) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.nudge()
		<-s.done
		// The syncer has exited: its fields are ours now.
		s.mu.Lock()
		err := s.health
		s.mu.Unlock()
		if s.active != nil {
			if cerr := s.active.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("ingest: close file sink: %w", cerr)
			}
		}
		unlockDir(s.lock)
		s.closeErr = err
	})
	if !first {
		return nil
	}
	return s.closeErr
}
