variable "name" {
  type        = string
  description = "Name prefix of every resource, e.g. tidelake-dev."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}

variable "retention_days" {
  type        = number
  description = "Days after which access-log objects are deleted."
  default     = 365
}

variable "force_destroy" {
  type        = bool
  description = "Allow terraform destroy to delete a non-empty log bucket (dev only)."
  default     = false
}
