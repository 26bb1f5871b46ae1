classdef Variant < scistack.BaseVariable
%VARIANT Test variable: values with and without a version key at one address.
end
