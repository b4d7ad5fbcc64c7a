package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// HeaderLen is the size of a frame header in bytes.
const HeaderLen = 6

// Errors returned by Read and Decode.
var (
	// ErrTooLarge: the header announces a payload over the reader's limit.
	ErrTooLarge = errors.New("frame: payload over the size limit")
	// ErrTruncated: the input ended inside a frame.
	ErrTruncated = errors.New("frame: truncated")
)

// Header is a decoded frame header.
type Header struct {
	Type    uint8
	Version uint8
	Length  uint32
}

// AppendHeader appends the header of a frame with the given payload length.
func AppendHeader(dst []byte, typ, version uint8, length int) []byte {
	return binary.BigEndian.AppendUint32(append(dst, typ, version), uint32(length))
}

// Append appends a whole frame to dst and returns the extended slice.
func Append(dst []byte, typ, version uint8, payload []byte) []byte {
	return append(AppendHeader(dst, typ, version, len(payload)), payload...)
}

// ParseHeader decodes a header from the first HeaderLen bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrTruncated
	}
	return Header{Type: b[0], Version: b[1], Length: binary.BigEndian.Uint32(b[2:6])}, nil
}

// Decode parses one frame from the front of b, checking the length against
// max before looking at the payload. It returns the header, the payload (a
// sub-slice of b, not a copy) and the rest of b.
func Decode(b []byte, max uint32) (h Header, payload, rest []byte, err error) {
	h, err = ParseHeader(b)
	if err != nil {
		return h, nil, b, err
	}
	if h.Length > max {
		return h, nil, b, fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, h.Length, max)
	}
	end := HeaderLen + int(h.Length)
	if len(b) < end {
		return h, nil, b, ErrTruncated
	}
	return h, b[HeaderLen:end:end], b[end:], nil
}

// Write writes one frame to w in a single Write call, so frames written by
// goroutines that share w under a lock never interleave.
func Write(w io.Writer, typ, version uint8, payload []byte) error {
	buf := make([]byte, 0, HeaderLen+len(payload))
	_, err := w.Write(Append(buf, typ, version, payload))
	return err
}

// Reader reads frames from a stream with a size limit. It reuses its buffer:
// a payload returned by Next is valid until the next call.
type Reader struct {
	r   io.Reader
	max uint32
	hdr [HeaderLen]byte
	buf []byte
}

// keepBuf is the largest buffer a Reader keeps between frames, and the step
// by which it grows a larger one while the payload arrives: a header that
// announces a frame at the size limit commits no more than that until the
// bytes come (a peer that sends such headers on many streams and stalls
// holds kilobytes, not the limit, per stream), and a stream that carried one
// large frame does not keep its buffer while idle.
const keepBuf = 64 << 10

// NewReader returns a Reader that refuses payloads over max bytes.
func NewReader(r io.Reader, max uint32) *Reader {
	return &Reader{r: r, max: max}
}

// Next reads the next frame. It returns io.EOF at a clean end of stream
// between frames, ErrTruncated when the stream ends inside one, and
// ErrTooLarge (without reading the payload) when the header announces more
// than the limit.
func (fr *Reader) Next() (Header, []byte, error) {
	if cap(fr.buf) > keepBuf {
		fr.buf = nil
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Header{}, nil, ErrTruncated
		}
		return Header{}, nil, err
	}
	h, _ := ParseHeader(fr.hdr[:])
	if h.Length > fr.max {
		return h, nil, fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, h.Length, fr.max)
	}
	n := int(h.Length)
	p := fr.buf[:0]
	for len(p) < n {
		// At most keepBuf, or the bytes already read, more at a time.
		step := min(n-len(p), max(len(p), keepBuf))
		p = slices.Grow(p, step)
		if _, err := io.ReadFull(fr.r, p[len(p):len(p)+step]); err != nil {
			fr.buf = p[:0]
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return h, nil, ErrTruncated
			}
			return h, nil, err
		}
		p = p[:len(p)+step]
	}
	fr.buf = p[:0]
	return h, p, nil
}
