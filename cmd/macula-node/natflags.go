package main

import (
	"fmt"
	"strings"

	"github.com/macula-io/macula/api"
)

// switchFlag is a flag that forces a choice on or off, or, unset, lets the
// node decide: --relay-service (on), --relay-service=false (off), nothing
// (auto). The environment and the config file give true or false.
type switchFlag string

const (
	switchAuto switchFlag = ""
	switchOn   switchFlag = "on"
	switchOff  switchFlag = "off"
)

func (f *switchFlag) String() string {
	switch *f {
	case switchOn:
		return "true"
	case switchOff:
		return "false"
	}
	return "auto"
}

func (f *switchFlag) Set(v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "on", "yes", "1":
		*f = switchOn
	case "false", "off", "no", "0":
		*f = switchOff
	case "auto", "":
		*f = switchAuto
	default:
		return fmt.Errorf("%q: want true, false or auto", v)
	}
	return nil
}

func (f *switchFlag) Type() string { return "bool" }

// decidedLine says what a node's reachability decision makes it do.
func decidedLine(r *api.Reachability) string {
	dhtMode, relays, service := "DHT client", "relay reservations", "no relay service"
	if r.DHTServer {
		dhtMode = "DHT server"
	}
	if !r.RelayReservations {
		relays = "no relay reservations"
	}
	if r.RelayService {
		service = "relay service"
	}
	return dhtMode + ", " + relays + ", " + service
}
