listen postgres
  bind *:${port}
%{ for b in backends ~}
  server ${b} ${b}:${port} check port 8008
%{ endfor ~}
