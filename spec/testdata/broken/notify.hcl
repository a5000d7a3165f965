service "nginx" {}

file "/etc/nginx/nginx.conf" {
  content = ""
  notify  = ["service.ngnix"] # ERROR: Did you mean "service.nginx.service"?
}

file "/etc/x" {
  content = ""
  notify  = ["nginx"] # ERROR: Reference to undeclared resource
}
