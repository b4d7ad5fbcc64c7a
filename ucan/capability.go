package ucan

import (
	"fmt"
	"strings"
	"time"

	"github.com/macula-io/macula/realm"
)

// Command is a UCAN command: a slash-separated path, where a command covers
// itself and every command below it ("/macula" covers "/macula/call").
type Command string

// The commands of a Macula realm.
const (
	// All covers every Macula command below, membership included.
	All Command = "/macula"
	// Call: call a procedure whose name the resource pattern matches.
	Call Command = "/macula/call"
	// Publish: publish to a topic the resource pattern matches.
	Publish Command = "/macula/publish"
	// Subscribe: subscribe to topics; a subscription pattern must lie
	// within the granted pattern (see CheckPattern).
	Subscribe Command = "/macula/subscribe"
	// Advertise: advertise (serve) a procedure the pattern matches.
	Advertise Command = "/macula/advertise"
	// Member: membership of the realm, granted directly by the authority,
	// optionally binding a node name for the alias did:macula:<realm>.<name>.
	Member Command = "/macula/member"
	// Serve: serve a capability of the realm (own shards of its actors,
	// claim it in the realm's membership); the resource is the
	// capability's name in the realm, ServeResource(realm, "game") =
	// "io.acme.orders.game", so that "io.acme.orders.*" grants serving
	// every capability.
	Serve Command = "/macula/serve"
	// Register: register a name in the registry; the resource is the key
	// as a realm name (registry.Resource: chat/room1 is
	// <realm>.chat.room1) or a pattern of them (<realm>.chat.>).
	Register Command = "/macula/register"
	// Join: join a group of the registry; resource as for Register.
	Join Command = "/macula/join"
	// Dispatch: send a message to the members of a registry key;
	// resource as for Register.
	Dispatch Command = "/macula/dispatch"
	// Actor: call and cast to the actors of a kind of a capability; the
	// resource is "<realm>.<capability>.<kind>" (actors.ActorResource), so
	// that "io.acme.orders.game.*" grants every kind of the capability
	// game.
	Actor Command = "/macula/actor"

	// revokeCommand is the command of a revocation record.
	revokeCommand Command = "/macula/revoke"
)

// abilities maps the words of the seed model and of the CLI's --can flag
// onto commands. "invoke" (seed) is a call, "read" (seed) is a subscription,
// "write" a publication; "*" and "all" are the whole /macula tree.
var abilities = map[string]Command{
	"call": Call, "invoke": Call,
	"publish": Publish, "write": Publish,
	"subscribe": Subscribe, "read": Subscribe,
	"advertise": Advertise, "provide": Advertise,
	"member":   Member,
	"serve":    Serve,
	"register": Register,
	"join":     Join,
	"dispatch": Dispatch,
	"actor":    Actor,
	"all":      All, "*": All,
}

// ParseCommand accepts a seed ability ("invoke", "read"), a short name
// ("call", "publish", "subscribe", "advertise", "member", "serve", "register",
// "join", "dispatch", "actor", "all") or a command
// path ("/macula/call"), and returns the command. A path outside /macula is
// refused: Macula nodes only honour their own commands.
func ParseCommand(s string) (Command, error) {
	if c, ok := abilities[strings.ToLower(strings.TrimSpace(s))]; ok {
		return c, nil
	}
	c := Command(s)
	if All.Covers(c) && validCommand(c) {
		return c, nil
	}
	return "", fmt.Errorf("%w: unknown ability %q (want call, publish, subscribe, advertise, member, serve, register, join, dispatch, actor, all, invoke, read or a /macula/... command)", ErrIssue, s)
}

// validCommand checks the command grammar: "/" or "/" followed by
// non-empty lowercase segments separated by "/".
func validCommand(c Command) bool {
	if c == "/" {
		return true
	}
	if !strings.HasPrefix(string(c), "/") {
		return false
	}
	for _, seg := range strings.Split(string(c)[1:], "/") {
		if seg == "" || seg != strings.ToLower(seg) {
			return false
		}
	}
	return true
}

// ServeResource is the resource that Serve is checked on for a capability
// of a realm: "<realm>.<capability>". Resources are names of the realm, so
// a capability ("game") is named under it ("io.acme.orders.game").
func ServeResource(realmName, capability string) string { return realmName + "." + capability }

// Covers reports whether c is other or one of its parents.
func (c Command) Covers(other Command) bool {
	if c == "/" {
		return strings.HasPrefix(string(other), "/")
	}
	return strings.HasPrefix(string(other), string(c)) &&
		(len(other) == len(c) || other[len(c)] == '/')
}

// Capability is one thing a principal may do: a command on the resources a
// pattern matches (segment-aware: "*" one segment, a final ">" one or more;
// ">" alone is every name of the realm).
type Capability struct {
	Command  Command
	Resource string
}

func (c Capability) String() string { return string(c.Command) + " " + c.Resource }

// Grant is what a peer was granted, for handlers: who it is and what it may
// do. It is a snapshot; Check is the authority at the time of a call.
type Grant struct {
	// Caller is the did:key of the peer, proven by the connection or by
	// the invocation's signature.
	Caller string
	// Open is true in an open realm (no authority): everything is allowed.
	Open bool
	// Member is true when the authority granted the caller membership of
	// the realm; Name is the node name bound to it, if any, for the alias
	// did:macula:<realm>.<Name>.
	Member bool
	Name   string
	// Capabilities lists the effective capability of each valid chain: its
	// last command and the intersection of the patterns along it.
	Capabilities []Capability
	// Expires is when the first of these chains expires (zero: never).
	Expires time.Time
}

// Allows reports whether the snapshot lists a capability covering cmd on
// resource. It does not look at time or revocations; use Check for that.
func (g Grant) Allows(cmd Command, resource string) bool {
	if g.Open {
		return true
	}
	for _, c := range g.Capabilities {
		if c.Command.Covers(cmd) && realm.Match(c.Resource, resource) {
			return true
		}
	}
	return false
}

// pattern is a parsed resource pattern: segments ("*" allowed) and whether a
// final ">" follows them.
type pattern struct {
	segs []string
	tail bool
}

// parsePattern checks the syntax of a resource pattern: segments as in realm
// names or "*", and ">" only last. It does not look at the realm.
func parsePattern(p string) (pattern, error) {
	if p == "" || len(p) > realm.MaxNameLen {
		return pattern{}, fmt.Errorf("pattern %q: empty or longer than %d bytes", p, realm.MaxNameLen)
	}
	parts := strings.Split(p, ".")
	var out pattern
	for i, s := range parts {
		switch {
		case s == ">" && i == len(parts)-1:
			out.tail = true
		case s == "*":
			out.segs = append(out.segs, s)
		case realm.ValidSegment(s):
			out.segs = append(out.segs, s)
		default:
			return pattern{}, fmt.Errorf("pattern %q: bad segment %q", p, s)
		}
	}
	return out, nil
}

func (p pattern) String() string {
	s := strings.Join(p.segs, ".")
	if p.tail {
		if s == "" {
			return ">"
		}
		return s + ".>"
	}
	return s
}

// intersect returns the pattern matching exactly the names both a and b
// match, or false when there is none. Segment-aware patterns are closed
// under intersection, which is what lets a chain's patterns fold into one.
func intersect(a, b string) (string, bool) {
	pa, err := parsePattern(a)
	if err != nil {
		return "", false
	}
	pb, err := parsePattern(b)
	if err != nil {
		return "", false
	}
	if len(pa.segs) > len(pb.segs) {
		pa, pb = pb, pa // pa is the shorter one
	}
	switch {
	case !pa.tail && !pb.tail && len(pa.segs) != len(pb.segs):
		return "", false
	case !pa.tail && pb.tail:
		// pa names exactly len(pa) segments, pb at least len(pb)+1 >= len(pa)+1.
		return "", false
	case pa.tail && !pb.tail && len(pb.segs) < len(pa.segs)+1:
		return "", false
	}
	out := pattern{tail: pa.tail && pb.tail}
	for i, s := range pb.segs {
		if i >= len(pa.segs) {
			out.segs = append(out.segs, s)
			continue
		}
		x, y := pa.segs[i], s
		switch {
		case x == "*":
			out.segs = append(out.segs, y)
		case y == "*" || x == y:
			out.segs = append(out.segs, x)
		default:
			return "", false
		}
	}
	return out.String(), true
}

// covers reports whether every name child matches is matched by parent.
func covers(parent, child string) bool {
	i, ok := intersect(parent, child)
	if !ok {
		return false
	}
	c, err := parsePattern(child)
	return err == nil && i == c.String()
}

// CheckPattern is Check for a subscription: it reports whether the verdict
// grants cmd (normally Subscribe) on every name pattern can match, that is,
// whether pattern lies within a granted pattern. A subscription to
// "io.acme.orders.*" needs a grant of that pattern or a wider one; a grant of
// "io.acme.orders.placed" alone does not cover it.
func CheckPattern(vd *Verdict, cmd Command, pattern string) error {
	return check(vd, cmd, pattern, true)
}
