package registry

import (
	"context"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/macula-io/macula/ucan"
)

// Send sends payload to the process at to, on this node or any other. It
// does not wait for the message to arrive (a message to another node goes
// through a bounded queue, and a full queue drops it, counted in
// Stats.DroppedSend; a full mailbox on the other node drops it too). It
// fails at once, with ErrNoProcess, for a local process that does not
// exist, ErrMailboxFull for a full local mailbox, and ErrNodeGone for a
// process whose node this node has no link to (it left, failed, or cannot
// be reached). The payload is copied.
func (r *Registry) Send(ctx context.Context, to Addr, payload []byte) error {
	return r.send(ctx, Addr{}, to, payload)
}

func (r *Registry) send(ctx context.Context, from, to Addr, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.isClosed.Load() {
		return ErrClosed
	}
	if len(payload) > r.cfg.MaxMessageSize {
		return fmt.Errorf("%w: message of %d bytes; the limit is %d (Config.MaxMessageSize)", ErrTooLarge, len(payload), r.cfg.MaxMessageSize)
	}
	if to.Node == "" || to.ID == 0 {
		return fmt.Errorf("%w: %s", ErrBadAddr, to)
	}
	if to.Node == r.self {
		p := r.process(to.ID)
		if p == nil {
			return fmt.Errorf("%w: %s", ErrNoProcess, to)
		}
		if err := p.deliver(Message{Kind: MessageData, From: from, Payload: slices.Clone(payload)}); err != nil {
			return fmt.Errorf("%w: %s", err, to)
		}
		return nil
	}
	l := r.openLink(to.Node)
	if l == nil {
		return fmt.Errorf("%w: %s (no link to its node)", ErrNodeGone, to)
	}
	m := &sendMsg{targets: []uint64{to.ID}, payload: payload}
	if from.Node == r.self {
		m.from = from.ID
	}
	if err := l.queueMessage(m); err != nil {
		return fmt.Errorf("%w: %s", err, to)
	}
	return nil
}

// openLink returns the link to p if our stream to it is open.
func (r *Registry) openLink(p peer.ID) *peerLink {
	r.repl.mu.Lock()
	l := r.repl.links[p]
	r.repl.mu.Unlock()
	if l == nil {
		return nil
	}
	l.mu.Lock()
	ok := l.s != nil && !l.closed && !l.draining
	l.mu.Unlock()
	if !ok {
		return nil
	}
	return l
}

// Dispatch sends payload to every process registered or joined under key
// (a key, or a prefix ending in "/": every key under it), in this node's
// view, wherever they run: local processes get it in their mailboxes, and
// each other node gets one network message for all of its processes. It
// returns how many processes it was sent to (a process both registered and
// joined counts once); processes of nodes this node has no link to are
// skipped (counted in Stats.DroppedSend). In a secure realm the node's
// grant must allow /macula/dispatch on the key (or the prefix's pattern),
// and receiving nodes check it again. The payload is copied.
func (r *Registry) Dispatch(ctx context.Context, key string, payload []byte, opts ...Option) (int, error) {
	return r.dispatch(ctx, Addr{}, key, payload, opts)
}

func (r *Registry) dispatch(ctx context.Context, from Addr, key string, payload []byte, opts []Option) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	o := merge(opts)
	if key == "" {
		return 0, fmt.Errorf("%w: Dispatch needs a key or a prefix ending in \"/\"", ErrInvalidKey)
	}
	prefix, err := r.keys.checkQuery(key)
	if err != nil {
		return 0, err
	}
	if len(payload) > r.cfg.MaxMessageSize {
		return 0, fmt.Errorf("%w: message of %d bytes; the limit is %d (Config.MaxMessageSize)", ErrTooLarge, len(payload), r.cfg.MaxMessageSize)
	}
	c, err := r.clusterFor(o.cluster)
	if err != nil {
		return 0, err
	}
	if err := r.authorize(ucan.Dispatch, key); err != nil {
		return 0, err
	}
	targets := c.targets(key, prefix)
	if len(targets) == 0 {
		return 0, nil
	}
	payload = slices.Clone(payload)
	n := 0
	byNode := map[peer.ID][]uint64{}
	for _, a := range targets {
		if a.Node != r.self {
			byNode[a.Node] = append(byNode[a.Node], a.ID)
			continue
		}
		p := r.process(a.ID)
		if p == nil {
			continue
		}
		if p.deliver(Message{Kind: MessageData, From: from, Key: key, Cluster: c.name, Payload: payload}) == nil {
			n++
		}
	}
	for node, ids := range byNode {
		l := r.openLink(node)
		if l == nil {
			r.stats.droppedSend.Add(1)
			continue
		}
		m := &sendMsg{targets: ids, cluster: c.name, key: key, payload: payload}
		if from.Node == r.self {
			m.from = from.ID
		}
		if l.queueMessage(m) == nil {
			n += len(ids)
		}
	}
	return n, nil
}

// targets returns the processes registered or joined under key or
// prefix, each once, in address order.
func (c *cluster) targets(key string, prefix bool) []Addr {
	var out []Addr
	names := []string{key}
	groups := names
	if prefix {
		names, groups = c.nameKeys(key), c.groupKeys(key)
	}
	for _, k := range names {
		sh := c.names.shard(k)
		sh.mu.RLock()
		if slot := sh.m[k]; slot != nil && slot.win != nil {
			out = append(out, slot.win.addr())
		}
		sh.mu.RUnlock()
	}
	for _, k := range groups {
		sh := c.groups.shard(k)
		sh.mu.RLock()
		if slot := sh.m[k]; slot != nil {
			for a := range slot.members {
				out = append(out, a)
			}
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b Addr) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	return slices.Compact(out)
}
