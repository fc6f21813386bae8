variable "region" {
  type        = string
  description = "AWS region of the state bucket and the image repository (use the region of the environments)."
}

variable "name" {
  type        = string
  description = "Name prefix of the bootstrap resources."
  default     = "tidelake"
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = { project = "tidelake", managed-by = "terraform", root = "bootstrap" }
}

variable "image_retention_count" {
  type        = number
  description = "How many images the repository keeps (older ones are expired)."
  default     = 50
}
