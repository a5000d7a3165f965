package backup

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// S3Config says how to reach an S3 bucket. Requests are path-style
// (Endpoint/Bucket/Key) and signed with AWS Signature Version 4.
type S3Config struct {
	// Endpoint is the service's base URL, e.g. https://s3.eu-west-1.amazonaws.com
	// or http://127.0.0.1:7070.
	Endpoint  string
	Region    string // "" = us-east-1
	Bucket    string
	AccessKey string
	SecretKey string
	// Prefix is prepended to every key ("" = the bucket's root).
	Prefix string
	// PartSize is the multipart threshold and part size (default 16 MiB,
	// at least 5 MiB); each in-flight Put buffers one part in memory, and
	// the buffers are reused.
	PartSize int
	// Client is the HTTP client (nil = a default one).
	Client *http.Client
}

// S3Repo is a repository in an S3 bucket. Put is a single PUT below
// PartSize and a multipart upload above, visible only once completed.
type S3Repo struct {
	cfg      S3Config
	endpoint *url.URL
	client   *http.Client
	// parts holds *[]byte of PartSize for reuse: a backup puts thousands
	// of objects, most far smaller than a part.
	parts sync.Pool
}

// NewS3 returns a repository in the configured bucket.
func NewS3(cfg S3Config) (*S3Repo, error) {
	u, err := url.Parse(strings.TrimRight(cfg.Endpoint, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("backup: s3 endpoint %q: not a URL", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("backup: s3: bucket is required")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 16 << 20
	}
	cfg.PartSize = max(cfg.PartSize, 5<<20)
	cfg.Prefix = strings.Trim(cfg.Prefix, "/")
	if cfg.Prefix != "" {
		if err := ValidateKey(cfg.Prefix); err != nil {
			return nil, err
		}
		cfg.Prefix += "/"
	}
	c := cfg.Client
	if c == nil {
		c = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, Proxy: http.ProxyFromEnvironment}}
	}
	return &S3Repo{cfg: cfg, endpoint: u, client: c}, nil
}

// s3Error is an S3 error response.
type s3Error struct {
	Status  int
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

func (e *s3Error) Error() string {
	return fmt.Sprintf("s3: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// uriEncode is SigV4's URI encoding: everything but unreserved characters
// is percent-encoded; '/' is kept when encodeSlash is false.
func uriEncode(s string, encodeSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') ||
			c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// do sends a signed request. objKey "" addresses the bucket. body may be
// nil. The caller closes the response body.
func (s *S3Repo) do(ctx context.Context, method, objKey string, query url.Values, body []byte, hdr http.Header) (*http.Response, error) {
	escPath := s.endpoint.EscapedPath() + "/" + uriEncode(s.cfg.Bucket, true)
	if objKey != "" {
		escPath += "/" + uriEncode(objKey, false)
	}
	// Canonical query: sorted keys, both sides encoded.
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var qs []string
	for _, k := range keys {
		for _, v := range query[k] {
			qs = append(qs, uriEncode(k, true)+"="+uriEncode(v, true))
		}
	}
	rawQuery := strings.Join(qs, "&")
	u := *s.endpoint
	u.RawPath, u.Path, u.RawQuery = escPath, "", rawQuery
	u.Path, _ = url.PathUnescape(escPath)
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.URL.RawPath = escPath
	req.ContentLength = int64(len(body))
	if body == nil {
		req.Body = http.NoBody
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	now := time.Now().UTC()
	amzDate := now.Format("20060102T150405Z")
	day := now.Format("20060102")
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	req.Header.Set("x-amz-date", amzDate)
	req.Header.Set("x-amz-content-sha256", payload)
	signed := []string{"host", "x-amz-content-sha256", "x-amz-date"}
	canonHeaders := "host:" + req.URL.Host + "\nx-amz-content-sha256:" + payload + "\nx-amz-date:" + amzDate + "\n"
	canon := strings.Join([]string{method, escPath, rawQuery, canonHeaders, strings.Join(signed, ";"), payload}, "\n")
	scope := day + "/" + s.cfg.Region + "/s3/aws4_request"
	ch := sha256.Sum256([]byte(canon))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(ch[:])
	k := hmacSHA256([]byte("AWS4"+s.cfg.SecretKey), day)
	k = hmacSHA256(k, s.cfg.Region)
	k = hmacSHA256(k, "s3")
	k = hmacSHA256(k, "aws4_request")
	sig := hex.EncodeToString(hmacSHA256(k, toSign))
	req.Header.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		s.cfg.AccessKey, scope, strings.Join(signed, ";"), sig))
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		e := &s3Error{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		xml.Unmarshal(b, e)
		if resp.StatusCode == http.StatusNotFound && (e.Code == "" || e.Code == "NoSuchKey" || e.Code == "NotFound") {
			return nil, fmt.Errorf("%w (%v)", ErrNotFound, e)
		}
		return nil, e
	}
	return resp, nil
}

func (s *S3Repo) key(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return s.cfg.Prefix + key, nil
}

// CreateBucket creates the bucket; an existing bucket owned by the caller
// is not an error.
func (s *S3Repo) CreateBucket(ctx context.Context) error {
	resp, err := s.do(ctx, http.MethodPut, "", nil, nil, nil)
	var e *s3Error
	if errors.As(err, &e) && e.Code == "BucketAlreadyOwnedByYou" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup: s3 create bucket %s: %w", s.cfg.Bucket, err)
	}
	resp.Body.Close()
	return nil
}

// Put implements Repository.
func (s *S3Repo) Put(ctx context.Context, key string, r io.Reader) (err error) {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	p, _ := s.parts.Get().(*[]byte)
	if p == nil {
		b := make([]byte, s.cfg.PartSize)
		p = &b
	}
	defer func() {
		// After an error the transport may still be sending the buffer
		// (a server may answer before reading the body): not reused then.
		if err == nil {
			s.parts.Put(p)
		}
	}()
	buf := *p
	n, err := io.ReadFull(r, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return fmt.Errorf("backup: s3 put %s: %w", key, err)
	}
	if n < len(buf) { // fits in one request
		resp, err := s.do(ctx, http.MethodPut, k, nil, buf[:n], nil)
		if err != nil {
			return fmt.Errorf("backup: s3 put %s: %w", key, err)
		}
		resp.Body.Close()
		return nil
	}
	return s.multipart(ctx, key, k, buf, r)
}

type completeUpload struct {
	XMLName xml.Name       `xml:"CompleteMultipartUpload"`
	Parts   []completePart `xml:"Part"`
}

type completePart struct {
	PartNumber int    `xml:"PartNumber"`
	ETag       string `xml:"ETag"`
}

func (s *S3Repo) multipart(ctx context.Context, key, k string, first []byte, r io.Reader) (err error) {
	resp, err := s.do(ctx, http.MethodPost, k, url.Values{"uploads": {""}}, nil, nil)
	if err != nil {
		return fmt.Errorf("backup: s3 put %s: initiate multipart: %w", key, err)
	}
	var init struct {
		UploadID string `xml:"UploadId"`
	}
	err = xml.NewDecoder(resp.Body).Decode(&init)
	resp.Body.Close()
	if err != nil || init.UploadID == "" {
		return fmt.Errorf("backup: s3 put %s: initiate multipart: %v", key, err)
	}
	defer func() {
		if err != nil { // abort with a fresh context: ctx may be the cause
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if resp, aerr := s.do(actx, http.MethodDelete, k, url.Values{"uploadId": {init.UploadID}}, nil, nil); aerr == nil {
				resp.Body.Close()
			}
		}
	}()
	var done completeUpload
	buf, n := first, len(first)
	for part := 1; n > 0; part++ {
		q := url.Values{"partNumber": {strconv.Itoa(part)}, "uploadId": {init.UploadID}}
		resp, err := s.do(ctx, http.MethodPut, k, q, buf[:n], nil)
		if err != nil {
			return fmt.Errorf("backup: s3 put %s: part %d: %w", key, part, err)
		}
		resp.Body.Close()
		done.Parts = append(done.Parts, completePart{PartNumber: part, ETag: resp.Header.Get("ETag")})
		var rerr error
		n, rerr = io.ReadFull(r, buf)
		if rerr != nil && rerr != io.ErrUnexpectedEOF && rerr != io.EOF {
			return fmt.Errorf("backup: s3 put %s: %w", key, rerr)
		}
	}
	body, err := xml.Marshal(done)
	if err != nil {
		return err
	}
	resp, err = s.do(ctx, http.MethodPost, k, url.Values{"uploadId": {init.UploadID}}, body, nil)
	if err != nil {
		return fmt.Errorf("backup: s3 put %s: complete multipart: %w", key, err)
	}
	defer resp.Body.Close()
	// A 200 may still carry an error document.
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if bytes.Contains(b, []byte("<Error>")) {
		e := &s3Error{Status: resp.StatusCode}
		xml.Unmarshal(b, e)
		return fmt.Errorf("backup: s3 put %s: complete multipart: %w", key, e)
	}
	return nil
}

// Get implements Repository.
func (s *S3Repo) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, err
	}
	resp, err := s.do(ctx, http.MethodGet, k, nil, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("backup: s3 get %s: %w", key, err)
	}
	return resp.Body, nil
}

// Stat implements Repository.
func (s *S3Repo) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	k, err := s.key(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	resp, err := s.do(ctx, http.MethodHead, k, nil, nil, nil)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("backup: s3 stat %s: %w", key, err)
	}
	resp.Body.Close()
	mt, _ := http.ParseTime(resp.Header.Get("Last-Modified"))
	return ObjectInfo{Key: key, Size: resp.ContentLength, ModTime: mt}, nil
}

// List implements Repository.
func (s *S3Repo) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	var out []ObjectInfo
	token := ""
	for {
		q := url.Values{"list-type": {"2"}, "prefix": {s.cfg.Prefix + prefix}}
		if token != "" {
			q.Set("continuation-token", token)
		}
		resp, err := s.do(ctx, http.MethodGet, "", q, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("backup: s3 list %s: %w", prefix, err)
		}
		var res struct {
			Contents []struct {
				Key          string    `xml:"Key"`
				Size         int64     `xml:"Size"`
				LastModified time.Time `xml:"LastModified"`
			} `xml:"Contents"`
			IsTruncated           bool   `xml:"IsTruncated"`
			NextContinuationToken string `xml:"NextContinuationToken"`
		}
		err = xml.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("backup: s3 list %s: %w", prefix, err)
		}
		for _, c := range res.Contents {
			key := strings.TrimPrefix(c.Key, s.cfg.Prefix)
			if strings.HasSuffix(key, "/") { // directory markers
				continue
			}
			out = append(out, ObjectInfo{Key: key, Size: c.Size, ModTime: c.LastModified})
		}
		if !res.IsTruncated || res.NextContinuationToken == "" {
			break
		}
		token = res.NextContinuationToken
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Repository.
func (s *S3Repo) Delete(ctx context.Context, key string) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	resp, err := s.do(ctx, http.MethodDelete, k, nil, nil, nil)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup: s3 delete %s: %w", key, err)
	}
	resp.Body.Close()
	return nil
}
