variable "name" {
  type        = string
  description = "Name prefix of every resource, e.g. tidelake-dev."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}

variable "bucket_name" {
  type        = string
  description = "Exact name of the lake bucket; null lets AWS pick a unique name starting with <name>-lake-."
  default     = null
}

variable "lake_prefix" {
  type        = string
  description = "Key prefix of the lake inside the bucket (no leading or trailing slash); LAKE_URI = s3://<bucket>/<lake_prefix>."
  default     = "lake"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]*$", var.lake_prefix))
    error_message = "lake_prefix is one path segment: lower-case letters, digits, '-' and '_'."
  }
}

variable "analyst_prefixes" {
  type        = list(string)
  description = "Lake sub-prefixes analysts may read (bronze and quarantine hold raw payloads, so they are left out by default)."
  default     = ["silver", "gold"]
}

variable "compute_log_prefix" {
  type        = string
  description = "Key prefix (outside the lake) where Dagster uploads step stdout/stderr."
  default     = "dagster/compute-logs"
}

variable "compute_log_retention_days" {
  type        = number
  description = "Days after which Dagster compute logs are deleted (plain files, not a Delta table, so expiring them is safe)."
  default     = 30
}

variable "noncurrent_version_days" {
  type        = number
  description = "Days a replaced or deleted object version is kept before S3 removes it (the undo window for VACUUM and overwrites)."
  default     = 30
}

variable "quarantine_noncurrent_days" {
  type        = number
  description = "Days a quarantine object version removed by the quarantine retention job (DELETE + VACUUM) is kept before S3 removes it."
  default     = 7
}

variable "access_log_bucket" {
  type        = string
  description = "Name of the bucket that receives S3 server access logs (the logs module)."
}

variable "access_log_prefix" {
  type        = string
  description = "Key prefix in access_log_bucket for this bucket's access logs; must end with a slash."
  default     = "s3/"
}

variable "force_destroy" {
  type        = bool
  description = "Allow terraform destroy to delete a non-empty lake bucket. Never true in production."
  default     = false
}

variable "kms_deletion_window_days" {
  type        = number
  description = "Waiting period before the lake KMS key is deleted after a destroy (7-30 days)."
  default     = 30
}
