package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/api"
)

func newPublishCmd() *cobra.Command {
	var (
		data, dataFile string
		raw, wait      bool
	)
	cmd := &cobra.Command{
		Use:   "publish TOPIC",
		Short: "Publish a message to a topic of the realm through a running node",
		Long: `Publish a message to a concrete topic of the node's realm (no wildcards)
through the node's API: every subscription in the realm whose pattern matches
the topic gets it, at most once.

The payload is --data (JSON, checked before it is sent), the content of
--data-file, or stdin with --data -; with --raw it is sent as raw bytes,
unchecked. Without any, an empty payload. Subscribers see a JSON payload as
JSON and any other as base64.

publish prints "published N bytes to TOPIC" once the node has queued the
message for its subscribers; that does not say who received it.

By default the node sheds: a subscriber whose queue is full misses the
message (the node counts it: macula-node pubsub stats). With --wait the node
waits for room in every full queue instead, for at most --timeout (default:
the node's 10s, at most 60s), so that a publisher that runs publish in a
loop is slowed down to its slowest subscriber rather than losing messages.
It reaches subscribers on other nodes only if they subscribed with
backpressure (subscribe --backpressure; see package pubsub, "Flow
control"). If the timeout ends
first, publish exits 4 and says for how many subscribers the message was
queued and for how many it was dropped: publishing it again would give the
first ones a second copy.`,
		Example: `  macula-node publish io.acme.orders.placed --data '{"id":42}'
  macula-node publish io.acme.orders.placed --data-file order.json
  head -c 64 /dev/urandom | macula-node publish io.acme.orders.noise --data - --raw
  macula-node publish io.acme.orders.placed --data '{"id":43}' --wait --timeout 30s`,
		Args: argsN(1, 1),
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "the payload, JSON unless --raw; - reads it from stdin")
	f.StringVar(&dataFile, "data-file", "", "read the payload from this file")
	f.BoolVar(&raw, "raw", false, "send the payload as raw bytes, without checking that it is JSON")
	f.BoolVar(&wait, "wait", false, "wait (up to --timeout) for room in full subscriber queues instead of dropping the message there")
	f.SortFlags = false
	return newClientCmd(cmd, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, args []string) error {
		topic := args[0]
		payload, err := readPayload(cmd, data, dataFile)
		if err != nil {
			return err
		}
		ct := api.ContentTypeJSON
		switch {
		case raw, len(payload) == 0:
			ct = api.ContentTypeRaw
		case !json.Valid(payload):
			return &usageError{err: errors.New("the payload is not valid JSON (give --raw for other payloads)"), hint: cmd.CommandPath()}
		}
		if !wait {
			err = c.Publish(ctx, topic, payload, ct)
		} else if err = c.PublishWait(ctx, topic, payload, ct, 0); isCode(err, api.CodeNoRoom) {
			return &codedError{code: exitTimeout, err: err}
		}
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, api.PublishResult{Topic: topic})
		}
		_, err = fmt.Fprintf(w, "published %d bytes to %s\n", len(payload), topic)
		return err
	})
}

func newSubscribeCmd(stderr io.Writer) *cobra.Command {
	var (
		asJSON, backpressure bool
		count                int
	)
	cmd := &cobra.Command{
		Use:   "subscribe PATTERN",
		Short: "Print the messages of the realm whose topic matches a pattern, as they come",
		Long: `Subscribe through a running node to PATTERN, an exact topic of the realm or a
pattern with "*" for one segment and a final ">" for one or more
(io.acme.orders.*, io.acme.>), and print each message as it comes, one line
each:

  TIME TOPIC PUBLISHER PAYLOAD

TIME is the publish time (local, milliseconds), PUBLISHER the start and end
of the publisher's did:key, PAYLOAD the JSON payload as it is, text as a
quoted string, anything else "base64:" and its base64. With --json each line
is the node's JSON object for the message (topic, payload, payload_encoding,
publisher, time, seq).

subscribe says "subscribed to PATTERN" on stderr once the node has made the
subscription, and runs until SIGINT or SIGTERM, or until --count messages
were printed, and exits 0. If it reads more slowly than messages come, the
node drops messages for it; it says how many on stderr. If the node stops,
subscribe exits 1.

With --backpressure the node holds messages from other nodes back instead
of dropping them (GET /v1/subscribe?backpressure=true): publishers that
publish with --wait are slowed down to the pace of this subscriber. The
cost is on the node: while subscribe is behind, everything each publisher
node sends it waits too. If subscribe stops reading (its output blocked)
until a write of the node's to it has waited 30s, the node ends the
subscription and subscribe exits 1.`,
		Example: `  macula-node subscribe 'io.acme.orders.*'
  macula-node subscribe 'io.acme.>' --json
  macula-node subscribe io.acme.orders.placed --count 1
  macula-node subscribe io.acme.orders.placed --backpressure | ./slow-consumer`,
		Args: argsN(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return &usageError{err: fmt.Errorf("--count %d: want 0 (no limit) or more", count), hint: cmd.CommandPath()}
			}
			addr, _ := cmd.Flags().GetString("api")
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := newAPIClient(cmd, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			var opts []api.SubscribeOption
			if backpressure {
				opts = append(opts, api.Backpressure())
			}
			return subscribeLoop(ctx, c, addr, args[0], opts, asJSON, count, cmd.OutOrStdout(), stderr)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print each message as the API's JSON object, one a line")
	f.IntVar(&count, "count", 0, "exit after this many messages (0: run until stopped)")
	f.BoolVar(&backpressure, "backpressure", false, "slow down waiting publishers (publish --wait) when behind, instead of the node dropping messages")
	f.SortFlags = false
	return cmd
}

// subscribeLoop subscribes and prints messages until ctx ends (exit 0),
// count messages were printed (exit 0), or the stream fails (exit 1).
func subscribeLoop(ctx context.Context, c *api.Client, addr, pattern string, opts []api.SubscribeOption, asJSON bool, count int, stdout, stderr io.Writer) error {
	sub, err := c.Subscribe(ctx, pattern, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before the node answered
		}
		return clientError(addr, err)
	}
	defer sub.Close()
	fmt.Fprintf(stderr, "macula-node: subscribed to %s\n", pattern)
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	var reported uint64
	for n := 0; count == 0 || n < count; n++ {
		ev, err := sub.Next()
		if done, err := streamEnd(ctx, err, addr, "subscription"); done {
			return err
		}
		if asJSON {
			err = enc.Encode(ev)
		} else {
			_, err = io.WriteString(stdout, eventLine(ev))
		}
		if err != nil {
			return err
		}
		if d := sub.Dropped(); d > reported {
			fmt.Fprintf(stderr, "macula-node: the node dropped %d message(s) of %s, not read fast enough (%d in all)\n", d-reported, pattern, d)
			reported = d
		}
	}
	return nil
}

// eventLine is one message as subscribe prints it in text:
// TIME TOPIC PUBLISHER PAYLOAD.
func eventLine(ev *api.SubscribeEvent) string {
	return fmt.Sprintf("%s %s %s %s\n", ev.Time.Local().Format("2006-01-02T15:04:05.000Z07:00"),
		ev.Topic, shortDID(ev.Publisher), payloadText(ev))
}

// shortDID is the start and end of a did:key's key: enough to tell
// publishers apart at a glance.
func shortDID(did string) string {
	k := strings.TrimPrefix(did, "did:key:")
	if len(k) <= 14 {
		return dash(k)
	}
	return k[:4] + "..." + k[len(k)-6:]
}

// payloadText is a payload on one line: JSON as it is, text quoted, other
// bytes in base64.
func payloadText(ev *api.SubscribeEvent) string {
	if ev.PayloadEncoding != api.PayloadBase64 {
		return string(ev.Payload) // one line: the node compacts JSON with line breaks
	}
	b, err := ev.Bytes()
	if err != nil {
		return "base64:" + strings.Trim(string(ev.Payload), `"`)
	}
	// Text, line breaks and tabs included (a line that ends in a newline,
	// as echo and most files have it), is quoted: escaped onto one line.
	if utf8.Valid(b) && strings.IndexFunc(string(b), func(r rune) bool { return !unicode.IsPrint(r) && !unicode.IsSpace(r) }) < 0 {
		return strconv.Quote(string(b)) // "" for an empty payload
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

func newPubSubCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pubsub",
		Short: "Ask a running node about its publish/subscribe service",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	cmd.AddCommand(newClientCmd(&cobra.Command{
		Use:   "stats",
		Short: "Print the counters of pub/sub: published, sent, delivered, dropped, frames received",
		Args:  argsN(0, 0),
	}, func(ctx context.Context, c *api.Client, cc *clientCmd, w io.Writer, _ []string) error {
		s, err := c.PubSubStats(ctx)
		if err != nil {
			return err
		}
		if cc.json {
			return printJSON(w, s)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "Published\t%d\n", s.Published)
		fmt.Fprintf(tw, "Sent\t%d\n", s.Sent)
		fmt.Fprintf(tw, "Delivered\t%d\n", s.Delivered)
		fmt.Fprintf(tw, "Dropped\t%d (send queues %d, subscriptions %d)\n", s.Dropped, s.DroppedSend, s.DroppedLocal)
		fmt.Fprintf(tw, "Queued\t%d\n", s.Queued)
		fmt.Fprintf(tw, "Frames received\t%d\n", s.FramesReceived)
		fmt.Fprintf(tw, "Subscriptions\t%d\n", s.Subscriptions)
		fmt.Fprintf(tw, "Interested peers\t%d\n", s.InterestedPeers)
		return tw.Flush()
	}))
	return cmd
}
