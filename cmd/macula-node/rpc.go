package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/macula-io/macula/api"
	"github.com/macula-io/macula/gateway"
)

// callGrace is how much longer than a call's --timeout the call command
// waits for the node's answer, so that the node's own 504 (or whatever
// came first) arrives rather than a local give-up.
const callGrace = 5 * time.Second

// defaultLease is the lease of macula-node advertise; it renews every
// third of it.
const defaultLease = 15 * time.Second

func newCallCmd() *cobra.Command {
	var (
		data, dataFile, contentType string
		timeout                     time.Duration
		raw, idempotent, asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "call PROCEDURE",
		Short: "Call a procedure of the realm through a running node and print the reply",
		Long: `Call a procedure of the node's realm, wherever in the realm it is advertised,
through the node's API, and print the reply: pretty-printed when it is JSON,
anything else as it is followed by a newline if it has none, and exactly as
it is with --raw. With --json: {"procedure": ..., "reply": the reply}, the
reply a JSON value, or base64 with "reply_encoding": "base64".

The payload is --data (JSON by default), the content of --data-file, or
stdin with --data -; without any, an empty payload (raw bytes, unless
--content-type says otherwise). --content-type picks the codec the handler
sees: application/json, application/cbor, anything else raw bytes.

Exit codes: 0 the reply was printed, 1 any other failure, 2 a wrong command
line, 3 no node advertises the procedure, 4 no answer within --timeout, 5 the
handler answered with an error, 6 the connection to the handler's node was
lost, 7 the caller may not call it.`,
		Example: `  macula-node call io.acme.orders.get_order --data '{"id":42}'
  macula-node call io.acme.orders.get_order --data-file order.json --timeout 5s
  echo '{"id":42}' | macula-node call io.acme.orders.get_order --data - --raw`,
		Args: argsN(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			procedure := args[0]
			payload, err := callPayload(cmd, data, dataFile, contentType)
			if err != nil {
				return err
			}
			ct := contentType
			if len(payload) == 0 && !cmd.Flags().Changed("content-type") {
				ct = api.ContentTypeRaw
			}
			addr, _ := cmd.Flags().GetString("api")
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout+callGrace)
				defer cancel()
			}
			c, err := newAPIClient(cmd, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			reply, err := c.Call(ctx, procedure, payload, api.CallOptions{Timeout: timeout, ContentType: ct, Idempotent: idempotent})
			if err != nil {
				return callError(addr, procedure, timeout, err)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), callResult(procedure, reply))
			}
			return printReply(cmd.OutOrStdout(), reply, raw)
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "the payload; - reads it from stdin")
	f.StringVar(&dataFile, "data-file", "", "read the payload from this file")
	f.StringVar(&contentType, "content-type", api.ContentTypeJSON, "media type of the payload: application/json, application/cbor, or anything else for raw bytes")
	f.DurationVar(&timeout, "timeout", 0, "give up the call after this long (default: the node's 30s)")
	f.BoolVar(&raw, "raw", false, "print the reply as it is, without pretty-printing JSON")
	f.BoolVar(&idempotent, "idempotent", false, "the call may run twice: the node may retry it elsewhere if a connection is lost")
	f.BoolVar(&asJSON, "json", false, `print {"procedure": ..., "reply": ...} (a reply that is not JSON in base64, with "reply_encoding": "base64")`)
	f.SortFlags = false
	return cmd
}

// callOutput is call's --json output.
type callOutput struct {
	Procedure     string          `json:"procedure"`
	Reply         json.RawMessage `json:"reply"`
	ReplyEncoding string          `json:"reply_encoding,omitempty"` // "base64" when the reply is not JSON
}

// callResult is the --json output of a call: a JSON reply as it is, any
// other in base64, as the API's subscriptions carry payloads.
func callResult(procedure string, reply []byte) callOutput {
	if len(reply) > 0 && json.Valid(reply) {
		return callOutput{Procedure: procedure, Reply: reply}
	}
	b, _ := json.Marshal(base64.StdEncoding.EncodeToString(reply))
	return callOutput{Procedure: procedure, Reply: b, ReplyEncoding: api.PayloadBase64}
}

// callPayload reads the payload from --data, stdin or --data-file, and
// checks that a JSON payload is JSON.
func callPayload(cmd *cobra.Command, data, dataFile, contentType string) ([]byte, error) {
	payload, err := readPayload(cmd, data, dataFile)
	if err != nil {
		return nil, err
	}
	if len(payload) > 0 && contentType == api.ContentTypeJSON && !json.Valid(payload) {
		return nil, &usageError{err: errors.New("the payload is not valid JSON (give --content-type for other payloads)"), hint: cmd.CommandPath()}
	}
	return payload, nil
}

// readPayload reads a payload from --data, stdin (--data -) or
// --data-file.
func readPayload(cmd *cobra.Command, data, dataFile string) ([]byte, error) {
	if cmd.Flags().Changed("data") && dataFile != "" {
		return nil, &usageError{err: errors.New("give --data or --data-file, not both"), hint: cmd.CommandPath()}
	}
	switch {
	case dataFile != "":
		b, err := os.ReadFile(dataFile)
		if err != nil {
			return nil, fmt.Errorf("--data-file: %w", err)
		}
		return b, nil
	case data == "-":
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, fmt.Errorf("reading the payload from stdin: %w", err)
		}
		return b, nil
	}
	return []byte(data), nil
}

// printReply prints a reply: JSON pretty-printed unless raw, anything else
// as it is, ended by a newline if it has none (so that the shell's prompt
// does not follow it on the same line); with raw, exactly as it is.
func printReply(w io.Writer, reply []byte, raw bool) error {
	if !raw && json.Valid(reply) {
		var buf bytes.Buffer
		if err := json.Indent(&buf, reply, "", "  "); err == nil {
			buf.WriteByte('\n')
			_, err := w.Write(buf.Bytes())
			return err
		}
	}
	if !raw && len(reply) > 0 && reply[len(reply)-1] != '\n' {
		reply = append(reply[:len(reply):len(reply)], '\n')
	}
	_, err := w.Write(reply)
	return err
}

// callError turns a failed call into one line and the exit code of its
// kind.
func callError(addr, procedure string, timeout time.Duration, err error) error {
	var ae *api.APIError
	if errors.As(err, &ae) {
		switch ae.Code {
		case api.CodeNotFound:
			return &codedError{code: exitNotFound, err: errors.New(ae.Message)}
		case api.CodeTimeout:
			return &codedError{code: exitTimeout, err: errors.New(ae.Message)}
		case api.CodeRemoteError:
			msg := ae.Message
			if r := ae.Remote; r != nil {
				msg = "remote error " + r.Code
				if r.Message != "" {
					msg += ": " + r.Message
				}
				if len(r.Data) > 0 {
					msg += " (data " + string(r.Data) + ")"
				}
			}
			return &codedError{code: exitRemote, err: errors.New(msg)}
		case api.CodeDisconnected:
			return &codedError{code: exitDisconnected, err: errors.New(ae.Message)}
		case api.CodeUnauthorized:
			return &codedError{code: exitUnauthorized, err: errors.New(ae.Message)}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) && timeout > 0 {
		return &codedError{code: exitTimeout, err: fmt.Errorf("%s: no answer from the node API at %s within %v", procedure, addr, timeout+callGrace)}
	}
	return clientError(addr, err)
}

func newAdvertiseCmd(stderr io.Writer) *cobra.Command {
	var (
		url            string
		lease, timeout time.Duration
		asJSON         bool
	)
	cmd := &cobra.Command{
		Use:   "advertise PROCEDURE --url URL",
		Short: "Serve a procedure of the realm with a webhook, until stopped",
		Long: `Advertise a procedure on a running node, served by a webhook: the node POSTs
each call's payload to --url (on loopback) and answers with the webhook's answer.
See the gateway package's doc for the webhook's contract (headers, errors).

advertise prints "advertised PROCEDURE -> URL" and keeps the advertisement
alive until SIGINT or SIGTERM, renewing its lease every third of --lease; then
it withdraws it and exits 0. If advertise dies, the node withdraws the
procedure when the lease runs out. A renewal that fails for a reason that may
pass (the API unreachable, the node restarting) is reported on stderr and
tried again: a node that lost the advertisement gets it back.

With --json each of these is a JSON object on a line of its own:
{"event": "advertised", "procedure", "url", "announced"}, then
{"event": "announced", ...} once the DHT announcement is out, and
{"event": "withdrawn", ...} at the end.`,
		Example: `  macula-node advertise io.acme.orders.get_order --url http://127.0.0.1:8080/get_order
  macula-node advertise io.acme.orders.get_order --url http://127.0.0.1:8080/get_order --lease 30s --webhook-timeout 10s`,
		Args: argsN(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			procedure := args[0]
			if url == "" {
				return &usageError{err: errors.New("--url is required"), hint: cmd.CommandPath()}
			}
			if lease != 0 && lease < gateway.MinLease {
				return &usageError{err: fmt.Errorf("--lease %v: want 0 (none) or at least %v", lease, gateway.MinLease), hint: cmd.CommandPath()}
			}
			addr, _ := cmd.Flags().GetString("api")
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := newAPIClient(cmd, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			return advertiseLoop(ctx, stop, c, addr, procedure, api.AdvertiseRequest{
				URL: url, Timeout: durationFlag(timeout), Lease: durationFlag(lease),
			}, lease, advertisePrinter(cmd.OutOrStdout(), procedure, url, asJSON), stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&url, "url", "", "the webhook: an http:// URL on loopback, such as http://127.0.0.1:8080/get_order (required)")
	f.DurationVar(&lease, "lease", defaultLease, "the node withdraws the procedure this long after the last renewal (0: never)")
	f.DurationVar(&timeout, "webhook-timeout", 0, "bound each webhook request (default: the call's own timeout)")
	f.BoolVar(&asJSON, "json", false, `print each event as a JSON line ({"event": "advertised"|"announced"|"withdrawn", ...})`)
	f.SortFlags = false
	return cmd
}

func durationFlag(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// announceState says where a DHT announcement stands, for the CLI's output.
func announceState(announced bool) string {
	if announced {
		return "announced in the DHT"
	}
	return "DHT announcement pending; the node retries it"
}

// advertiseLoop advertises, renews every lease/3 until ctx ends, then
// withdraws the advertisement.
func advertiseLoop(ctx context.Context, stop func(), c *api.Client, addr, procedure string, req api.AdvertiseRequest,
	lease time.Duration, emit func(event string, announced bool) error, stderr io.Writer) error {
	announced := false
	post := func(d time.Duration) error {
		pctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		ad, err := c.AdvertiseWebhook(pctx, procedure, req)
		if err == nil {
			announced = ad.Announced
		}
		return err
	}
	if err := post(gateway.DefaultAdvertiseTimeout + 5*time.Second); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it was advertised
		}
		return clientError(addr, err)
	}
	if err := emit("advertised", announced); err != nil {
		return err
	}
	var tick <-chan time.Time
	if lease > 0 {
		t := time.NewTicker(lease / 3)
		defer t.Stop()
		tick = t.C
	}
	failing := false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick:
			was := announced
			err := post(gateway.DefaultAdvertiseTimeout + 5*time.Second)
			var ae *api.APIError
			switch {
			case err == nil:
				if announced && !was {
					emit("announced", true)
				}
				if failing {
					fmt.Fprintf(stderr, "macula-node: %s advertised again\n", procedure)
					failing = false
				}
			case ctx.Err() != nil:
				break loop
			case errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500:
				// The node refuses it now (another webhook took the name
				// after our lease ran out): not ours to withdraw.
				return fmt.Errorf("renewing %s: %w", procedure, clientError(addr, err))
			default:
				fmt.Fprintf(stderr, "macula-node: renewing %s: %v (trying again)\n", procedure, clientError(addr, err))
				failing = true
			}
		}
	}
	stop() // a second signal kills the process the usual way
	uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.Unadvertise(uctx, procedure)
	var ae *api.APIError
	if err != nil && !(errors.As(err, &ae) && ae.Code == api.CodeNotFound) {
		return fmt.Errorf("withdrawing %s: %w", procedure, clientError(addr, err))
	}
	return emit("withdrawn", announced)
}

// advertiseEvent is a line of advertise --json.
type advertiseEvent struct {
	Event     string `json:"event"` // advertised, announced, withdrawn
	Procedure string `json:"procedure"`
	URL       string `json:"url"`
	Announced bool   `json:"announced"` // the DHT announcement is out
}

// advertisePrinter prints advertise's events: text lines, or JSON lines.
// The text says nothing of the withdrawal, which the exit tells.
func advertisePrinter(w io.Writer, procedure, url string, asJSON bool) func(event string, announced bool) error {
	return func(event string, announced bool) error {
		if asJSON {
			b, _ := json.Marshal(advertiseEvent{Event: event, Procedure: procedure, URL: url, Announced: announced})
			_, err := fmt.Fprintf(w, "%s\n", b)
			return err
		}
		var err error
		switch event {
		case "advertised":
			state := announceState(announced)
			if !announced {
				state += "; connected nodes know it already"
			}
			_, err = fmt.Fprintf(w, "advertised %s -> %s (%s)\n", procedure, url, state)
		case "announced":
			_, err = fmt.Fprintf(w, "announced %s in the DHT\n", procedure)
		}
		return err
	}
}
