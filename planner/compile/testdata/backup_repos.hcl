# Two backup repositories, with the hosts of spec/testdata/examples/lab.hcl:
# a directory on NFS (named "nfs") and an SFTP server (named "offsite")
# whose key and host key are given by value (the lab's test keys).

variable "password" {
  sensitive = true
  default   = "test-password"
}

variable "sftp_private_key" {
  sensitive = true
  default   = <<-EOT
    -----BEGIN OPENSSH PRIVATE KEY-----
    b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
    QyNTUxOQAAACDZoZBz7LqcO02tfSV0kP1hnvmCb7NC7DVL9/AXUPZmaAAAAKDeS0HF3ktB
    xQAAAAtzc2gtZWQyNTUxOQAAACDZoZBz7LqcO02tfSV0kP1hnvmCb7NC7DVL9/AXUPZmaA
    AAAEAa2sbj03qRn1/FK1diesY742vNDbFPwsYsaIAsNC6kWdmhkHPsupw7Ta19JXSQ/WGe
    +YJvs0LsNUv38BdQ9mZoAAAAGHBnaGVyZCBsYWIgYmFja3VwIGNsaWVudAECAwQF
    -----END OPENSSH PRIVATE KEY-----
  EOT
}

cluster "lab" {
  postgres {
    version              = 15
    hosts                = ["node1", "node2"]
    superuser_password   = var.password
    replication_password = var.password
  }

  etcd {
    hosts = ["node1"]
  }

  backup {
    encryption_passphrase = var.password

    repository {
      name = "nfs"
      type = "path"
      path = "/mnt/nfs/pgherd-backup"
    }

    repository {
      name        = "offsite"
      type        = "sftp"
      host        = "10.77.0.14"
      port        = 2222
      user        = "pgherd-backup"
      private_key = var.sftp_private_key
      host_key    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIECtqtRlkpxgmR16PYQX1rjZcASMH77St/8BIYl6HIlb"
      root        = "/srv/pgherd-backup"

      retention {
        full = 6
      }
    }
  }
}
