package main

// connSet is one node's open connections: peer -> the second the
// connection was opened, in an open-addressing table with linear probing
// and backward-shift deletion (no tombstones). The connection model makes
// hundreds of millions of inserts and deletes at 10,000 nodes; Go maps of
// that many churning entries made it several times slower.
type connSet struct {
	slots []uint64 // (peer+1)<<32 | opened; 0 is empty
	n     int
}

func (s *connSet) home(p int32) int {
	return int((uint32(p) * 2654435761) & uint32(len(s.slots)-1))
}

// get returns when the connection to p was opened, if there is one.
func (s *connSet) get(p int32) (int32, bool) {
	if len(s.slots) == 0 {
		return 0, false
	}
	mask := len(s.slots) - 1
	for i := s.home(p); ; i = (i + 1) & mask {
		e := s.slots[i]
		if e == 0 {
			return 0, false
		}
		if int32(e>>32)-1 == p {
			return int32(uint32(e)), true
		}
	}
}

// add records a connection to p opened at t; it reports false if there
// was one.
func (s *connSet) add(p, t int32) bool {
	if 2*(s.n+1) > len(s.slots) {
		s.grow()
	}
	mask := len(s.slots) - 1
	for i := s.home(p); ; i = (i + 1) & mask {
		e := s.slots[i]
		if e == 0 {
			s.slots[i] = uint64(p+1)<<32 | uint64(uint32(t))
			s.n++
			return true
		}
		if int32(e>>32)-1 == p {
			return false
		}
	}
}

// del removes the connection to p.
func (s *connSet) del(p int32) {
	if len(s.slots) == 0 {
		return
	}
	mask := len(s.slots) - 1
	i := s.home(p)
	for {
		e := s.slots[i]
		if e == 0 {
			return
		}
		if int32(e>>32)-1 == p {
			break
		}
		i = (i + 1) & mask
	}
	s.n--
	// Shift back the entries after i whose home is not between i and them.
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		e := s.slots[j]
		if e == 0 {
			break
		}
		h := s.home(int32(e>>32) - 1)
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			s.slots[i] = e
			i = j
		}
	}
	s.slots[i] = 0
}

func (s *connSet) grow() {
	old := s.slots
	s.slots = make([]uint64, max(16, 2*len(old)))
	s.n = 0
	for _, e := range old {
		if e != 0 {
			s.add(int32(e>>32)-1, int32(uint32(e)))
		}
	}
}

// each calls f for every connection.
func (s *connSet) each(f func(p, opened int32)) {
	for _, e := range s.slots {
		if e != 0 {
			f(int32(e>>32)-1, int32(uint32(e)))
		}
	}
}

func (s *connSet) len() int { return s.n }
