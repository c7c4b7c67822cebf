// gocheck: Go's encoding/json itself on structs with the field names, types and tags of Cilium's
// (written from the facts in include/kvstore/cilium/*.h). Reads lines "KIND DATA" and prints, per
// line, what json.Unmarshal then json.Marshal make of DATA (KIND node, ipcache, service, export),
// or Go's text of an IP (ip), or Go's JSON string of hex bytes (hex). tests/cilium/gocheck.sh
// runs it over tests/cilium/testdata/go_encoding.txt.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"
)

type CIDR struct{ *net.IPNet }
type Address struct {
	Type string
	IP   net.IP
}
type Node struct {
	Name                    string
	Cluster                 string
	IPAddresses             []Address
	IPv4AllocCIDR           *CIDR
	IPv4SecondaryAllocCIDRs []*CIDR
	IPv6AllocCIDR           *CIDR
	IPv6SecondaryAllocCIDRs []*CIDR
	IPv4HealthIP            net.IP
	IPv6HealthIP            net.IP
	IPv4IngressIP           net.IP
	IPv6IngressIP           net.IP
	ClusterID               uint32
	Source                  string
	EncryptionKey           uint8
	Labels                  map[string]string
	Annotations             map[string]string
	NodeIdentity            uint32
	WireguardPubKey         string
	BootID                  string
}
type NamedPort struct {
	Name     string `json:"Name"`
	Port     uint16 `json:"Port"`
	Protocol string `json:"Protocol"`
}
type IPIdentityPair struct {
	IP                net.IP      `json:"IP"`
	Mask              net.IPMask  `json:"Mask"`
	HostIP            net.IP      `json:"HostIP"`
	ID                uint32      `json:"ID"`
	Key               uint8       `json:"Key"`
	Metadata          string      `json:"Metadata"`
	K8sNamespace      string      `json:"K8sNamespace,omitempty"`
	K8sPodName        string      `json:"K8sPodName,omitempty"`
	K8sServiceAccount string      `json:"K8sServiceAccount,omitempty"`
	NamedPorts        []NamedPort `json:"NamedPorts,omitempty"`
}
type L4Addr struct {
	Protocol string
	Port     uint16
}
type ForZone struct {
	Name string `json:"name"`
}
type BackendZone struct {
	Zone     string    `json:"zone"`
	ForZones []ForZone `json:"forZones"`
}
type ClusterService struct {
	Cluster         string                        `json:"cluster"`
	Namespace       string                        `json:"namespace"`
	Name            string                        `json:"name"`
	Frontends       map[string]map[string]*L4Addr `json:"frontends"`
	Backends        map[string]map[string]*L4Addr `json:"backends"`
	Hostnames       map[string]string             `json:"hostnames,omitempty"`
	Zones           map[string]BackendZone        `json:"zones,omitempty"`
	Labels          map[string]string             `json:"labels"`
	Selector        map[string]string             `json:"selector"`
	IncludeExternal bool                          `json:"includeExternal"`
	Shared          bool                          `json:"shared"`
	ClusterID       uint32                        `json:"clusterID"`
}
type Time struct{ time.Time }

func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339))
}
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	p, err := time.Parse(time.RFC3339, s)
	t.Time = p.Local()
	return err
}

type ServicePort struct {
	Name        string  `json:"name,omitempty"`
	Protocol    string  `json:"protocol,omitempty"`
	AppProtocol *string `json:"appProtocol,omitempty"`
	Port        int32   `json:"port"`
}
type ClientIPConfig struct {
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
}
type SessionAffinityConfig struct {
	ClientIP *ClientIPConfig `json:"clientIP,omitempty"`
}
type Export struct {
	Cluster                 string                 `json:"cluster"`
	Name                    string                 `json:"name"`
	Namespace               string                 `json:"namespace"`
	Annotations             map[string]string      `json:"annotations,omitempty"`
	Labels                  map[string]string      `json:"labels,omitempty"`
	LegacyLabels            map[string]string      `json:"Labels,omitempty"`
	LegacyAnnotations       map[string]string      `json:"Annotations,omitempty"`
	ExportCreationTimestamp Time                   `json:"exportCreationTimestamp"`
	Ports                   []ServicePort          `json:"ports"`
	Type                    string                 `json:"type"`
	SessionAffinity         string                 `json:"sessionAffinity"`
	SessionAffinityConfig   *SessionAffinityConfig `json:"sessionAffinityConfig,omitempty"`
	IPFamilies              []string               `json:"ipFamilies,omitempty"`
	InternalTrafficPolicy   *string                `json:"internalTrafficPolicy,omitempty"`
	TrafficDistribution     *string                `json:"trafficDistribution,omitempty"`
}

func roundTrip(kind, data string) string {
	var v any
	switch kind {
	case "node":
		v = &Node{}
	case "ipcache":
		v = &IPIdentityPair{}
	case "service":
		s := &ClusterService{Frontends: map[string]map[string]*L4Addr{}, Backends: map[string]map[string]*L4Addr{}, Hostnames: map[string]string{}, Zones: map[string]BackendZone{}, Labels: map[string]string{}, Selector: map[string]string{}}
		v = s
	case "export":
		v = &Export{}
	case "hex":
		b := make([]byte, len(data)/2)
		for i := range b {
			fmt.Sscanf(data[2*i:2*i+2], "%02x", &b[i])
		}
		out, _ := json.Marshal(string(b))
		return string(out)
	case "ip":
		ip := net.ParseIP(data)
		if ip == nil {
			return "INVALID"
		}
		return ip.String()
	case "string":
		var s string
		if err := json.Unmarshal([]byte(data), &s); err != nil {
			return "ERR " + err.Error()
		}
		out, _ := json.Marshal(s)
		return string(out)
	}
	if err := json.Unmarshal([]byte(data), v); err != nil {
		return "ERR " + err.Error()
	}
	if e, ok := v.(*Export); ok {
		if len(e.Annotations) == 0 {
			e.Annotations = e.LegacyAnnotations
		}
		if len(e.Labels) == 0 {
			e.Labels = e.LegacyLabels
		}
		e.LegacyAnnotations = e.Annotations
		e.LegacyLabels = e.Labels
	}
	out, err := json.Marshal(v)
	if err != nil {
		return "ERR " + err.Error()
	}
	return string(out)
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var kind, data string
		for i := range line {
			if line[i] == ' ' {
				kind, data = line[:i], line[i+1:]
				break
			}
		}
		fmt.Println(roundTrip(kind, data))
	}
}
