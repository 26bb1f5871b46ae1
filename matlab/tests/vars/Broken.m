classdef Broken < scistack.BaseVariable
end
