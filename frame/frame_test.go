package frame

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	payloads := [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{7}, 1000)}
	for i, p := range payloads {
		if err := Write(&buf, uint8(i+1), 1, p); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(iotest.OneByteReader(&buf), 1024)
	for i, want := range payloads {
		h, p, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if h.Type != uint8(i+1) || h.Version != 1 || !bytes.Equal(p, want) {
			t.Fatalf("frame %d = %+v %q", i, h, p)
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("end = %v, want io.EOF", err)
	}
}

func TestLimitsAndTruncation(t *testing.T) {
	big := Append(nil, 1, 1, make([]byte, 100))
	cases := []struct {
		name string
		in   []byte
		max  uint32
		want error
	}{
		{"over limit", big, 99, ErrTooLarge},
		{"lying header, no payload", AppendHeader(nil, 1, 1, 1<<31), 1 << 20, ErrTooLarge},
		{"half a header", big[:3], 1000, ErrTruncated},
		{"payload cut", big[:50], 1000, ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := NewReader(bytes.NewReader(c.in), c.max).Next(); !errors.Is(err, c.want) {
				t.Fatalf("Reader.Next = %v, want %v", err, c.want)
			}
			if _, _, _, err := Decode(c.in, c.max); !errors.Is(err, c.want) {
				t.Fatalf("Decode = %v, want %v", err, c.want)
			}
		})
	}
}

// FuzzDecode checks that Decode and Reader agree on every input, never read
// past a limit, and that whatever decodes re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, 1, 1, []byte("x")), uint32(16))
	f.Add(Append(Append(nil, 2, 0, nil), 3, 9, []byte("abc")), uint32(2))
	f.Add([]byte{1, 2, 0xff, 0xff, 0xff, 0xff}, uint32(1<<20))
	f.Fuzz(func(t *testing.T, in []byte, max uint32) {
		max %= 1 << 16
		h, p, rest, err := Decode(in, max)
		h2, p2, err2 := NewReader(bytes.NewReader(in), max).Next()
		if err != nil {
			if err2 == nil {
				t.Fatalf("Decode failed (%v) but Reader read %+v", err, h2)
			}
			if len(rest) != len(in) {
				t.Fatal("Decode consumed input on error")
			}
			return
		}
		if err2 != nil || h2 != h || !bytes.Equal(p, p2) {
			t.Fatalf("Reader = %+v %v, Decode = %+v", h2, err2, h)
		}
		if h.Length > max || len(p) != int(h.Length) {
			t.Fatalf("payload %d bytes, header %d, max %d", len(p), h.Length, max)
		}
		again := append(Append(nil, h.Type, h.Version, p), rest...)
		if !bytes.Equal(again, in) {
			t.Fatal("re-encoding differs from input")
		}
	})
}

// A header that announces a frame at the limit commits memory only as its
// bytes arrive, and a large frame's buffer is not kept for the next one.
func TestReaderGrowsWithTheBytes(t *testing.T) {
	const limit = 1 << 20
	var b bytes.Buffer
	b.Write(AppendHeader(nil, 1, 1, limit))
	b.Write(make([]byte, 10))
	fr := NewReader(&b, limit)
	if _, _, err := fr.Next(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("Next of a header and 10 bytes = %v, want ErrTruncated", err)
	}
	if c := cap(fr.buf); c > keepBuf {
		t.Fatalf("a header at the limit with 10 bytes behind it took a buffer of %d bytes (at most %d)", c, keepBuf)
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), limit/16)
	b.Reset()
	if err := Write(&b, 2, 1, big); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b, 3, 1, []byte("small")); err != nil {
		t.Fatal(err)
	}
	fr = NewReader(&b, limit)
	h, p, err := fr.Next()
	if err != nil || h.Type != 2 || !bytes.Equal(p, big) {
		t.Fatalf("the frame at the limit: type %d, %d bytes, equal %v, err %v", h.Type, len(p), bytes.Equal(p, big), err)
	}
	h, p, err = fr.Next()
	if err != nil || h.Type != 3 || string(p) != "small" {
		t.Fatalf("the frame after it: type %d, %q, err %v", h.Type, p, err)
	}
	if c := cap(fr.buf); c > keepBuf {
		t.Fatalf("the reader kept a buffer of %d bytes after a small frame (at most %d)", c, keepBuf)
	}
}
