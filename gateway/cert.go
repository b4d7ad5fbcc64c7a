package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/macula-io/macula/internal/atomicfile"
)

// certValidity is how long a self-signed API certificate is valid. It is
// long because clients pin it: a new one means re-pinning everywhere.
const certValidity = 10 * 365 * 24 * time.Hour

// apiCert is the HTTP/3 certificate and whether it still has to be saved.
type apiCert struct {
	tls  tls.Certificate
	pem  []byte // the certificate, PEM
	key  []byte // the key, PEM; only set while unsaved
	save string // DataDir to save into after the listeners are bound; "" = nothing to save
}

// loadCert returns the certificate New serves HTTP/3 with: the user's, the
// one kept in DataDir, or a new self-signed one. It writes nothing: a new
// certificate for DataDir is saved by apiCert.persist once New cannot fail
// on a busy port any more.
func loadCert(s *settings, now time.Time) (*apiCert, error) {
	if s.TLSCertFile != "" {
		certPEM, err := os.ReadFile(s.TLSCertFile)
		if err != nil {
			return nil, fmt.Errorf("%w: TLSCertFile: %v", ErrConfig, err)
		}
		keyPEM, err := os.ReadFile(s.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: TLSKeyFile: %v", ErrConfig, err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: TLSCertFile %s, TLSKeyFile %s: %v", ErrConfig, s.TLSCertFile, s.TLSKeyFile, err)
		}
		return &apiCert{tls: c, pem: certPEM}, nil
	}
	if s.DataDir != "" {
		certPath, keyPath := filepath.Join(s.DataDir, CertFile), filepath.Join(s.DataDir, KeyFile)
		certPEM, cerr := os.ReadFile(certPath)
		keyPEM, kerr := os.ReadFile(keyPath)
		switch {
		case cerr == nil && kerr == nil:
			c, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return nil, fmt.Errorf("%w: %s and %s: %v (delete both to make a new pair)", ErrCert, certPath, keyPath, err)
			}
			if c.Leaf != nil && now.Before(c.Leaf.NotAfter.Add(-24*time.Hour)) {
				return &apiCert{tls: c, pem: certPEM}, nil
			}
			s.Logger.Info("API certificate expired or about to; making a new one", "file", certPath)
		case errors.Is(cerr, fs.ErrNotExist) || errors.Is(kerr, fs.ErrNotExist):
			// None yet, or half a pair: make a new one.
		default:
			return nil, fmt.Errorf("%w: %v", ErrCert, errors.Join(cerr, kerr))
		}
	}
	c, err := newSelfSigned(now)
	if err != nil {
		return nil, err
	}
	c.save = s.DataDir
	return c, nil
}

// newSelfSigned makes an ECDSA P-256 certificate for the loopback names,
// valid for certValidity.
func newSelfSigned(now time.Time) (*apiCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("gateway: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("gateway: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "macula-node API"},
		NotBefore:             now.Add(-time.Hour), // tolerate clocks a little behind
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("gateway: certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("gateway: certificate key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("gateway: certificate: %w", err)
	}
	return &apiCert{tls: c, pem: certPEM, key: keyPEM}, nil
}

// persist saves a new certificate and its key into the data directory, mode
// 0600. Each file is replaced atomically; if the second cannot be written the
// first is removed again, so the directory never holds a mismatched pair that
// this call made.
func (c *apiCert) persist() error {
	if c.save == "" {
		return nil
	}
	if err := os.MkdirAll(c.save, 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrCert, err)
	}
	certPath, keyPath := filepath.Join(c.save, CertFile), filepath.Join(c.save, KeyFile)
	if err := atomicfile.Write(keyPath, c.key, 0o600); err != nil {
		return fmt.Errorf("%w: %v", ErrCert, err)
	}
	if err := atomicfile.Write(certPath, c.pem, 0o600); err != nil {
		_ = os.Remove(keyPath)
		return fmt.Errorf("%w: %v", ErrCert, err)
	}
	c.save, c.key = "", nil
	return nil
}
