# The S3 bucket that holds the Delta lake, with a KMS key of its own, and the IAM policies that
# scope access to the lake prefixes. Layout under s3://<bucket>/<lake_prefix>/:
#   bronze/<topic>, quarantine, silver/..., gold/..., _ledger/produced  (Delta tables)
# and, outside the lake prefix, <compute_log_prefix>/ for Dagster's step logs.
#
# Lifecycle rules never expire *current* objects under the lake prefix: a Delta table's log
# references its data files, and deleting one behind Delta's back breaks every later read. Old
# rows leave through Delta (DELETE + VACUUM); S3 then removes the noncurrent versions.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  tags          = merge(var.tags, { "tidelake:module" = "lake" })
  account_root  = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
  bucket_arn    = aws_s3_bucket.lake.arn
  lake_objects  = "${aws_s3_bucket.lake.arn}/${var.lake_prefix}/*"
  s3_via_region = "s3.${data.aws_region.current.region}.amazonaws.com"
}

resource "aws_kms_key" "lake" {
  description             = "${var.name}: Delta lake bucket"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  # The account administers the key; who may use it is decided by IAM policies (below), which
  # only allow it through S3.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdmin"
      Effect    = "Allow"
      Principal = { AWS = local.account_root }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })

  tags = local.tags
}

resource "aws_kms_alias" "lake" {
  name          = "alias/${var.name}-lake"
  target_key_id = aws_kms_key.lake.key_id
}

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage cost; versioning + the Kafka retention window are the recovery path. Add replication per account policy.
  #checkov:skip=CKV2_AWS_62:No consumer of S3 event notifications; Dagster learns of new data from the Delta log.
  bucket        = var.bucket_name
  bucket_prefix = var.bucket_name == null ? "${var.name}-lake-" : null
  force_destroy = var.force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket = aws_s3_bucket.lake.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.lake.arn
    }
    # One data key per bucket instead of one KMS call per object: Delta writes many small files.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "lake" {
  bucket = aws_s3_bucket.lake.id

  target_bucket = var.access_log_bucket
  target_prefix = "${var.access_log_prefix}${aws_s3_bucket.lake.id}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  # Versions replaced or deleted by Delta (VACUUM, log cleanup, overwrites) are kept for an undo
  # window and then removed; current objects are never touched.
  rule {
    id     = "noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }

    expiration {
      expired_object_delete_marker = true
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Old quarantine rows are deleted by the retention job (Delta DELETE by ingest_date, then
  # VACUUM); this rule makes the removed files disappear sooner than the lake-wide undo window.
  rule {
    id     = "quarantine-removed-files"
    status = "Enabled"

    filter {
      prefix = "${var.lake_prefix}/quarantine/"
    }

    noncurrent_version_expiration {
      noncurrent_days = var.quarantine_noncurrent_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Dagster compute logs are plain files, not a Delta table: expiring current objects is safe.
  rule {
    id     = "dagster-compute-logs"
    status = "Enabled"

    filter {
      prefix = "${var.compute_log_prefix}/"
    }

    expiration {
      days = var.compute_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.lake]
}

resource "aws_s3_bucket_policy" "lake" {
  bucket = aws_s3_bucket.lake.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [local.bucket_arn, "${local.bucket_arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        Sid       = "DenyOldTls"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [local.bucket_arn, "${local.bucket_arn}/*"]
        Condition = { NumericLessThan = { "s3:TlsVersion" = "1.2" } }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.lake]
}

# --- IAM policies scoped to the lake prefixes -------------------------------------------------

resource "aws_iam_policy" "lake_read_write" {
  name        = "${var.name}-lake-read-write"
  description = "Ingestion and Dagster runs: read, write and vacuum every table under s3://${aws_s3_bucket.lake.id}/${var.lake_prefix}/."
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ListLakePrefix"
        Effect   = "Allow"
        Action   = ["s3:ListBucket", "s3:ListBucketVersions"]
        Resource = local.bucket_arn
        Condition = {
          StringLike = { "s3:prefix" = [var.lake_prefix, "${var.lake_prefix}/*"] }
        }
      },
      {
        Sid      = "BucketLocation"
        Effect   = "Allow"
        Action   = ["s3:GetBucketLocation"]
        Resource = local.bucket_arn
      },
      {
        Sid    = "ReadWriteLakeObjects"
        Effect = "Allow"
        Action = [
          "s3:GetObject",
          "s3:PutObject",
          "s3:DeleteObject",
          "s3:AbortMultipartUpload",
          "s3:ListMultipartUploadParts",
        ]
        Resource = local.lake_objects
      },
      {
        Sid      = "UseLakeKeyThroughS3"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = aws_kms_key.lake.arn
        Condition = {
          StringEquals = { "kms:ViaService" = local.s3_via_region }
        }
      },
    ]
  })

  tags = local.tags
}

resource "aws_iam_policy" "lake_read_only" {
  name        = "${var.name}-lake-analyst-read-only"
  description = "Analysts: read-only access to ${join(", ", var.analyst_prefixes)} under s3://${aws_s3_bucket.lake.id}/${var.lake_prefix}/."
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ListAnalystPrefixes"
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = local.bucket_arn
        Condition = {
          StringLike = {
            "s3:prefix" = flatten([for p in var.analyst_prefixes : ["${var.lake_prefix}/${p}", "${var.lake_prefix}/${p}/*"]])
          }
        }
      },
      {
        Sid      = "BucketLocation"
        Effect   = "Allow"
        Action   = ["s3:GetBucketLocation"]
        Resource = local.bucket_arn
      },
      {
        Sid      = "ReadAnalystObjects"
        Effect   = "Allow"
        Action   = ["s3:GetObject"]
        Resource = [for p in var.analyst_prefixes : "${local.bucket_arn}/${var.lake_prefix}/${p}/*"]
      },
      {
        Sid      = "DecryptThroughS3"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = aws_kms_key.lake.arn
        Condition = {
          StringEquals = { "kms:ViaService" = local.s3_via_region }
        }
      },
    ]
  })

  tags = local.tags
}

resource "aws_iam_policy" "compute_logs" {
  name        = "${var.name}-dagster-compute-logs"
  description = "Dagster webserver, daemon and runs: write and read step logs under s3://${aws_s3_bucket.lake.id}/${var.compute_log_prefix}/."
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ListComputeLogs"
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = local.bucket_arn
        Condition = {
          StringLike = { "s3:prefix" = [var.compute_log_prefix, "${var.compute_log_prefix}/*"] }
        }
      },
      {
        Sid      = "ReadWriteComputeLogs"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject"]
        Resource = "${local.bucket_arn}/${var.compute_log_prefix}/*"
      },
      {
        Sid      = "UseLakeKeyThroughS3"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = aws_kms_key.lake.arn
        Condition = {
          StringEquals = { "kms:ViaService" = local.s3_via_region }
        }
      },
    ]
  })

  tags = local.tags
}
